-- The checksum of the marts definitions the migrate step applied; no row before it ever ran.
SELECT checksum FROM security.applied_definitions WHERE name = %(name)s
