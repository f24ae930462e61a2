-- The key store: every wrapped data key of the platform, in a database of its own that no capture
-- or analyst role can connect to (pg_hba.conf and CONNECT privileges), so neither a replication
-- slot on a source database nor that database's change stream ever carries key material.
-- A key row is keyed by the data key's own id, the one every ciphertext carries; an owner may
-- briefly hold two keys while a rotation moves their ciphertexts to the new one.

CREATE TABLE customer_data_key (
    key_id      text        PRIMARY KEY CHECK (key_id ~ '^[A-Za-z0-9][A-Za-z0-9.-]{0,47}$'),
    customer_id bigint      NOT NULL CHECK (customer_id > 0),
    wrapped_key bytea       NOT NULL CHECK (octet_length(wrapped_key) > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customer_data_key_customer_idx ON customer_data_key (customer_id);

CREATE TABLE merchant_data_key (
    key_id      text        PRIMARY KEY CHECK (key_id ~ '^[A-Za-z0-9][A-Za-z0-9.-]{0,47}$'),
    merchant_id bigint      NOT NULL CHECK (merchant_id > 0),
    wrapped_key bytea       NOT NULL CHECK (octet_length(wrapped_key) > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX merchant_data_key_merchant_idx ON merchant_data_key (merchant_id);

-- Facts about destroyed keys (ids, owner, when, WAL position), never key material. The erasure
-- window check reads it: a destroyed key is gone for good once its table was rewritten after the
-- destruction and no WAL segment from before that rewrite is left.
CREATE TABLE key_destruction (
    key_id        text        PRIMARY KEY,
    owner_table   text        NOT NULL CHECK (owner_table IN ('customer', 'merchant')),
    owner_id      bigint      NOT NULL,
    reason        text        NOT NULL CHECK (reason ~ '^[a-z][a-z_]{2,63}$'),
    destroyed_at  timestamptz NOT NULL DEFAULT now(),
    destroyed_lsn pg_lsn      NOT NULL DEFAULT pg_current_wal_insert_lsn()
);
CREATE INDEX key_destruction_owner_idx ON key_destruction (owner_table, owner_id);

-- Each rewrite (VACUUM FULL) of a key table: the rewrite copies live rows only, and the old file,
-- which still held the bytes of keys deleted before it started, is unlinked. WAL written up to
-- finished_lsn may still hold such bytes (full-page images of the old file).
CREATE TABLE key_table_compaction (
    compaction_id bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name    text        NOT NULL CHECK (table_name IN ('customer_data_key', 'merchant_data_key')),
    started_at    timestamptz NOT NULL,
    started_lsn   pg_lsn      NOT NULL,
    finished_at   timestamptz NOT NULL DEFAULT now(),
    finished_lsn  pg_lsn      NOT NULL DEFAULT pg_current_wal_insert_lsn()
);
CREATE INDEX key_table_compaction_table_idx ON key_table_compaction (table_name, finished_at);
