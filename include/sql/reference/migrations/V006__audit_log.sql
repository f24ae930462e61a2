-- Who did what to whom, for key rotations of merchant data keys. Insert-only: rows record facts about
-- personal data without holding any (ids, action codes, reason codes, key ids; never values).

CREATE TABLE audit_log (
    audit_log_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Set by the trigger below from the session, so a writer cannot claim to be someone else.
    actor         text        NOT NULL DEFAULT current_user,
    action        text        NOT NULL CHECK (action IN (
                                  'merchant_data_key_rotated', 'data_keys_rewrapped')),
    subject_table text        NOT NULL CHECK (subject_table ~ '^[a-z][a-z0-9_]*$'),
    -- NULL for events about a whole table (a KEK rewrap run).
    subject_id    bigint,
    -- A reason code, not free text: free text is where personal data would sneak in.
    reason        text        CHECK (reason ~ '^[a-z][a-z_]{2,63}$'),
    detail        jsonb       NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(detail) = 'object'),
    occurred_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_subject_idx ON audit_log (subject_table, subject_id, occurred_at);
CREATE INDEX audit_log_occurred_idx ON audit_log (occurred_at);

CREATE FUNCTION audit_log_stamp() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.actor := current_user;
    NEW.occurred_at := now();
    RETURN NEW;
END;
$$;
CREATE TRIGGER audit_log_stamp BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_stamp();

CREATE FUNCTION audit_log_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is insert-only: % rejected', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'audit rows are never changed or removed';
END;
$$;
CREATE TRIGGER audit_log_insert_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_reject_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_reject_change();
