-- Server settings that decide what a full rebuild costs, for reports and the benchmark.
SELECT name, current_setting(name)
FROM unnest(ARRAY['shared_buffers', 'max_wal_size', 'maintenance_work_mem', 'work_mem',
                  'max_parallel_maintenance_workers']) AS name
