-- Least privilege and a tamper-evident audit trail (docs/security.md, *Roles and privileges* and
-- *Tamper-evident audit*).
--
-- 1. Grants are data: paydata_role_grant lists role x object x privileges, and
--    paydata_apply_grants() applies them, skipping (with a NOTICE) a role that does not exist yet.
--    Roles are cluster-wide and created by the stack or compose's init.sh, never here.
-- 2. audit_log rows are written only through audit_append(), a SECURITY DEFINER function owned by
--    the schema owner (which no application login is a member of); nobody else has INSERT.
-- 3. Every row carries chain_position, prev_hash and row_hash = sha256(canonical fields | hex of
--    prev_hash); audit_chain_head holds the last link, so removing the newest rows shows too.
-- 4. The subject of an event must exist (audit_subject lists the auditable tables and their key).

CREATE TABLE paydata_role_grant (
    role_name   name NOT NULL,
    object_type text NOT NULL CHECK (object_type IN ('SCHEMA', 'TABLE', 'FUNCTION')),
    object_name text NOT NULL,
    privileges  text NOT NULL CHECK (privileges ~ '^[A-Z]+(, [A-Z]+)*$'),
    PRIMARY KEY (role_name, object_type, object_name)
);
REVOKE ALL ON paydata_role_grant FROM PUBLIC;

CREATE FUNCTION paydata_apply_grants() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    g record;
    applied integer := 0;
BEGIN
    FOR g IN SELECT * FROM paydata_role_grant ORDER BY role_name, object_type, object_name LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = g.role_name) THEN
            RAISE NOTICE 'role % does not exist yet; its grant on % is skipped', g.role_name, g.object_name;
            CONTINUE;
        END IF;
        EXECUTE format('GRANT %s ON %s %s TO %I', g.privileges, g.object_type,
                       CASE g.object_type
                           WHEN 'SCHEMA' THEN quote_ident(g.object_name)
                           WHEN 'FUNCTION' THEN g.object_name::regprocedure::text
                           ELSE g.object_name::regclass::text
                       END,
                       g.role_name);
        applied := applied + 1;
    END LOOP;
    RETURN applied;
END;
$$;
REVOKE ALL ON FUNCTION paydata_apply_grants() FROM PUBLIC;

-- Which tables an audit event may be about, and the key column its subject_id refers to (NULL:
-- only events about the whole table, subject_id NULL).
CREATE TABLE audit_subject (
    subject_table text PRIMARY KEY CHECK (subject_table ~ '^[a-z][a-z0-9_]*$'),
    key_column    text CHECK (key_column ~ '^[a-z][a-z0-9_]*$')
);
INSERT INTO audit_subject (subject_table, key_column) VALUES
    ('customer', 'customer_id'),
    ('customer_data_key', NULL);
REVOKE ALL ON audit_subject FROM PUBLIC;

ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check CHECK (action IN (
    'customer_erased', 'customer_data_key_rotated', 'data_keys_rewrapped', 'erasure_completed',
    'personal_data_read'));

ALTER TABLE audit_log ADD COLUMN chain_position bigint;
ALTER TABLE audit_log ADD COLUMN prev_hash bytea;
ALTER TABLE audit_log ADD COLUMN row_hash bytea;

-- The canonical text of a row: every field, '|'-separated, NULL as the empty string, the time in
-- UTC to the microsecond, detail as jsonb's own (key-sorted) text. `audit-verify` recomputes it
-- with its own copy of this expression (include/sql/oltp_ops/audit_chain_rows.sql).
CREATE FUNCTION audit_row_hash(
    p_chain_position bigint, p_audit_log_id bigint, p_actor text, p_action text, p_subject_table text,
    p_subject_id bigint, p_reason text, p_detail jsonb, p_occurred_at timestamptz, p_prev_hash bytea
) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(convert_to(concat_ws('|',
        p_chain_position::text, p_audit_log_id::text, p_actor, p_action, p_subject_table,
        coalesce(p_subject_id::text, ''), coalesce(p_reason, ''), p_detail::text,
        to_char(p_occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        encode(p_prev_hash, 'hex')), 'UTF8'))
$$;

-- Chain the rows written before this migration, oldest first.
CREATE TABLE audit_chain_head (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    chain_position bigint  NOT NULL,
    row_hash       bytea   NOT NULL
);
REVOKE ALL ON audit_chain_head FROM PUBLIC;

ALTER TABLE audit_log DISABLE TRIGGER audit_log_insert_only;
DO $$
DECLARE
    r record;
    position bigint := 0;
    previous bytea := decode(repeat('00', 32), 'hex');
BEGIN
    FOR r IN SELECT * FROM audit_log ORDER BY audit_log_id LOOP
        position := position + 1;
        UPDATE audit_log
        SET chain_position = position,
            prev_hash = previous,
            row_hash = audit_row_hash(position, r.audit_log_id, r.actor, r.action, r.subject_table,
                                      r.subject_id, r.reason, r.detail, r.occurred_at, previous)
        WHERE audit_log_id = r.audit_log_id
        RETURNING row_hash INTO previous;
    END LOOP;
    INSERT INTO audit_chain_head (chain_position, row_hash) VALUES (position, previous);
END;
$$;
ALTER TABLE audit_log ENABLE TRIGGER audit_log_insert_only;

ALTER TABLE audit_log ALTER COLUMN chain_position SET NOT NULL;
ALTER TABLE audit_log ALTER COLUMN prev_hash SET NOT NULL;
ALTER TABLE audit_log ALTER COLUMN row_hash SET NOT NULL;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_chain_position_uq UNIQUE (chain_position);

-- The BEFORE INSERT trigger (existing name, new body): stamps who and when, refuses an unknown
-- subject, and links the row to the chain head, which its row lock serialises: the chain order
-- is the commit order, whatever order identity values were drawn in. The actor is the session's
-- login role: inside audit_append current_user is the function's owner.
CREATE OR REPLACE FUNCTION audit_log_stamp() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    subject_key text;
    subject_found boolean;
    head record;
BEGIN
    SELECT key_column INTO subject_key FROM audit_subject WHERE subject_table = NEW.subject_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'audit subject table % is not auditable', NEW.subject_table
            USING ERRCODE = 'foreign_key_violation', HINT = 'see audit_subject';
    END IF;
    IF NEW.subject_id IS NOT NULL THEN
        IF subject_key IS NULL THEN
            RAISE EXCEPTION 'events about % concern the whole table: subject_id must be NULL', NEW.subject_table
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE %I = $1)', NEW.subject_table, subject_key)
            INTO subject_found USING NEW.subject_id;
        IF NOT subject_found THEN
            RAISE EXCEPTION 'audit subject %(%) = % does not exist', NEW.subject_table, subject_key, NEW.subject_id
                USING ERRCODE = 'foreign_key_violation';
        END IF;
    END IF;
    NEW.actor := session_user;
    NEW.occurred_at := now();
    SELECT chain_position, row_hash INTO head FROM audit_chain_head FOR UPDATE;
    NEW.chain_position := head.chain_position + 1;
    NEW.prev_hash := head.row_hash;
    NEW.row_hash := audit_row_hash(NEW.chain_position, NEW.audit_log_id, NEW.actor, NEW.action,
                                   NEW.subject_table, NEW.subject_id, NEW.reason, NEW.detail,
                                   NEW.occurred_at, NEW.prev_hash);
    UPDATE audit_chain_head SET chain_position = NEW.chain_position, row_hash = NEW.row_hash;
    RETURN NEW;
END;
$$;

-- The one way in for everyone but the owner. search_path is pinned so a caller cannot shadow
-- audit_log or the functions it uses with objects of its own.
CREATE FUNCTION audit_append(p_action text, p_subject_table text, p_subject_id bigint, p_reason text,
                             p_detail jsonb) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    INSERT INTO audit_log (action, subject_table, subject_id, reason, detail)
    VALUES (p_action, p_subject_table, p_subject_id, p_reason, coalesce(p_detail, '{}'::jsonb))
    RETURNING audit_log_id
$$;
REVOKE ALL ON FUNCTION audit_append(text, text, bigint, text, jsonb) FROM PUBLIC;
REVOKE ALL ON audit_log FROM PUBLIC;

-- The role matrix of this database (docs/security.md). paydata_cdc keeps its own grants (V006).
INSERT INTO paydata_role_grant (role_name, object_type, object_name, privileges) VALUES
    ('oltp_app', 'SCHEMA', 'public', 'USAGE'),
    ('oltp_app', 'TABLE', 'currency_ref', 'SELECT'),
    ('oltp_app', 'TABLE', 'merchant_ref', 'SELECT'),
    ('oltp_app', 'TABLE', 'charge_status_transition', 'SELECT'),
    ('oltp_app', 'TABLE', 'customer', 'SELECT, INSERT, UPDATE'),
    ('oltp_app', 'TABLE', 'payment_method', 'SELECT, INSERT, UPDATE, DELETE'),
    ('oltp_app', 'TABLE', 'payment_intent', 'SELECT, INSERT, UPDATE'),
    ('oltp_app', 'TABLE', 'charge', 'SELECT, INSERT, UPDATE'),
    ('oltp_app', 'TABLE', 'refund', 'SELECT, INSERT'),
    ('oltp_app', 'TABLE', 'dispute', 'SELECT, INSERT, UPDATE'),
    ('oltp_app', 'TABLE', 'payout', 'SELECT, INSERT, UPDATE'),
    ('oltp_app', 'TABLE', 'balance_transaction', 'SELECT, INSERT'),
    ('oltp_app', 'FUNCTION', 'audit_append(text, text, bigint, text, jsonb)', 'EXECUTE'),
    ('auditor', 'SCHEMA', 'public', 'USAGE'),
    ('auditor', 'TABLE', 'audit_log', 'SELECT'),
    ('auditor', 'TABLE', 'audit_chain_head', 'SELECT');

SELECT paydata_apply_grants();
