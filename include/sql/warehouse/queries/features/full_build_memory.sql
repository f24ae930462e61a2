-- A full build sorts every charge once per entity: enough memory for the sorts to stay in memory
-- (this transaction only).
SET LOCAL work_mem = '256MB';
