-- Online spine of the merchant lookups: every merchant of the dimension at the refresh's as_of.
INSERT INTO feature_spine (spine_id, as_of, known_lsn, merchant_id)
SELECT merchant_id, %(as_of)s, %(known_lsn)s, merchant_id FROM (SELECT DISTINCT merchant_id FROM marts.dim_merchant) AS m;
