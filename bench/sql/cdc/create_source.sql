-- bench/cdc_end_to_end_bench.py and bench/cdc_crash_torture.py: a charge-like source table.
-- ip_address is dropped by the benchmark manifest and customer_id tokenised, as in production.
CREATE TABLE charge (
    charge_id bigint PRIMARY KEY,
    payment_intent_id bigint NOT NULL,
    customer_id bigint NOT NULL,
    amount bigint NOT NULL,
    currency_code character(3) NOT NULL,
    status text NOT NULL,
    failure_code text,
    captured boolean NOT NULL,
    ip_address inet,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
GRANT USAGE ON SCHEMA public TO paydata_cdc;
GRANT SELECT ON charge TO paydata_cdc;
