-- The reference database's audit log gets the OLTP one's protections (OLTP V011; docs/security.md,
-- *Tamper-evident audit*): every row is linked into a SHA-256 hash chain whose head is kept in
-- audit_chain_head, the subject of an event must exist, and the actor is the session's login.
-- The writers here are owner jobs (KEK rewrap of merchant keys), which keep inserting directly;
-- audit_append() is the way in for any other role, and is granted to none today.
-- `python -m paydata.oltp audit-verify --db reference` recomputes the chain as the auditor.

CREATE TABLE audit_subject (
    subject_table text PRIMARY KEY CHECK (subject_table ~ '^[a-z][a-z0-9_]*$'),
    key_column    text CHECK (key_column ~ '^[a-z][a-z0-9_]*$')
);
INSERT INTO audit_subject (subject_table, key_column) VALUES
    ('merchant', 'merchant_id'),
    ('merchant_data_key', NULL);
REVOKE ALL ON audit_subject FROM PUBLIC;

ALTER TABLE audit_log ADD COLUMN chain_position bigint;
ALTER TABLE audit_log ADD COLUMN prev_hash bytea;
ALTER TABLE audit_log ADD COLUMN row_hash bytea;

-- The canonical text of a row, exactly as in OLTP: every field '|'-separated, NULL as '', the time
-- in UTC to the microsecond, detail as jsonb text, then the hex of the previous hash. The verifier
-- recomputes it with its own copy (include/sql/reference_ops/audit_chain_rows.sql).
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

CREATE TABLE audit_chain_head (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    chain_position bigint  NOT NULL,
    row_hash       bytea   NOT NULL
);
REVOKE ALL ON audit_chain_head FROM PUBLIC;

-- Chain the rows written before this migration, oldest first.
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

-- The BEFORE INSERT trigger (existing name, new body): refuses an unknown subject, stamps the
-- login and the time, and links the row to the head, whose row lock serialises writers.
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

CREATE FUNCTION audit_append(p_action text, p_subject_table text, p_subject_id bigint, p_reason text,
                             p_detail jsonb) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    INSERT INTO audit_log (action, subject_table, subject_id, reason, detail)
    VALUES (p_action, p_subject_table, p_subject_id, p_reason, coalesce(p_detail, '{}'::jsonb))
    RETURNING audit_log_id
$$;
REVOKE ALL ON FUNCTION audit_append(text, text, bigint, text, jsonb) FROM PUBLIC;

INSERT INTO paydata_role_grant (role_name, object_type, object_name, privileges) VALUES
    ('auditor', 'TABLE', 'audit_chain_head', 'SELECT');
SELECT paydata_apply_grants();
