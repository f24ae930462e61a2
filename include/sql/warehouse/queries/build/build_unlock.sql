SELECT pg_advisory_unlock(hashtextextended('paydata.warehouse.build', 0))
