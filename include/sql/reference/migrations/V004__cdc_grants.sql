-- Read access for the CDC role on the captured tables. Data keys are deliberately not captured:
-- wrapped keys never leave this database.
--
-- The grants live in a function so the CDC setup can call it again after creating the role
-- (`SELECT paydata_grant_cdc_read()`); the migration itself applies whether or not the role exists.
CREATE FUNCTION paydata_grant_cdc_read() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'paydata_cdc') THEN
        RAISE NOTICE 'role paydata_cdc does not exist yet; CDC grants skipped';
        RETURN false;
    END IF;
    GRANT USAGE ON SCHEMA public TO paydata_cdc;
    GRANT SELECT ON currency, country, fx_rate, merchant_risk_tier, merchant TO paydata_cdc;
    RETURN true;
END;
$$;

SELECT paydata_grant_cdc_read();
