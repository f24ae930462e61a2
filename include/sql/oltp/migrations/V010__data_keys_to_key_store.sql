-- Data keys now live in the key store database (include/sql/keystore), which no capture role can
-- connect to: a table here would put wrapped keys into this database's change stream, which a
-- role with REPLICATION can decode whatever its table grants say. `paydata.keystore.legacy`
-- moves existing rows first; dropping a table that still holds keys would lose them, so refuse.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM customer_data_key) THEN
        RAISE EXCEPTION 'customer_data_key still holds keys: move them to the key store first'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'python -m paydata.keystore move-legacy-keys (the schema_migrate DAG does it)';
    END IF;
END;
$$;
DROP TABLE customer_data_key;

-- Erasure also wipes what links a charge to the person behind it (ip, device, session) and the
-- processor's free text; the audit log records completion of the erasure window.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check CHECK (action IN (
    'customer_erased', 'customer_data_key_rotated', 'data_keys_rewrapped', 'erasure_completed'));
