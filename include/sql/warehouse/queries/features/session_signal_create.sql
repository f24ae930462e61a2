-- Session signals of the spine's charges, computed from Mongo by ml.features.sessions and COPYed in.
CREATE TEMP TABLE session_signal (
    charge_id bigint PRIMARY KEY,
    {columns}
) ON COMMIT DROP;
