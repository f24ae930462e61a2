-- Does the source database still have its pre-key-store data-key table?
SELECT to_regclass(%(table)s) IS NOT NULL
