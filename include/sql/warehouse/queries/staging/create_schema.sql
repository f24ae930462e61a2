-- The staging layer: mirrors of captured source tables plus the per-source CDC offsets.
CREATE SCHEMA IF NOT EXISTS {schema}
