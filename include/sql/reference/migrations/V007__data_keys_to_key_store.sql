-- Merchant data keys now live in the key store database (see oltp V009 for why).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM merchant_data_key) THEN
        RAISE EXCEPTION 'merchant_data_key still holds keys: move them to the key store first'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'python -m paydata.keystore move-legacy-keys (the schema_migrate DAG does it)';
    END IF;
END;
$$;
DROP TABLE merchant_data_key;
