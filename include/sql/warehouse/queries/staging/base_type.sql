-- Canonical base type name of a (whitelisted) type, typmod dropped: 'timestamptz' -> 'timestamp with time zone'.
SELECT %(type)s::regtype::text
