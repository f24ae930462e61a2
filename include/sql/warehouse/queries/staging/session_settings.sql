-- Batches are sorted (DISTINCT ON) and held in temporary tables; keep both in memory instead of
-- spilling to disk. temp_buffers can only be set before the session touches its first temporary table.
SET temp_buffers = '128MB';
SET work_mem = '128MB'
