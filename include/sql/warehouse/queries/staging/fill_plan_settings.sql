-- The batch table has no statistics, so the planner assumes most of its rows need filling and
-- hash-joins the whole mirror; only deletes and TOAST updates do, so probe the mirror's key index.
SET LOCAL enable_hashjoin = off;
SET LOCAL enable_mergejoin = off
