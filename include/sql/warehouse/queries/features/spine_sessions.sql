-- The session token and time of every spine row that has a session.
SELECT spine_id, session_id, as_of FROM feature_spine WHERE session_id IS NOT NULL ORDER BY spine_id;
