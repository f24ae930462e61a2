-- Full rebuild only: enough memory for the fact index builds to sort in memory.
SELECT set_config('maintenance_work_mem', %(maintenance_work_mem)s, true)
