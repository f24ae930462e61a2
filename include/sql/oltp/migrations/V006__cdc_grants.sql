-- Read access for the CDC role on the captured tables. Not captured, on purpose:
-- customer_data_key (wrapped keys never leave this database; an erasure reaches downstream as the
-- customer's erased_at update), merchant_ref and currency_ref (replicas: the reference DB is
-- captured at its source), charge_status_transition (static, shipped with this migration).
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
    GRANT SELECT ON customer, payment_method, payment_intent, charge, refund, dispute, payout,
        balance_transaction TO paydata_cdc;
    RETURN true;
END;
$$;

SELECT paydata_grant_cdc_read();
