-- bench/cdc_end_to_end_bench.py: the raw COPY baseline's target (plain table, same columns).
CREATE TABLE bench_copy_target (
    charge_id bigint, payment_intent_id bigint, customer_id text, amount bigint,
    currency_code character(3), status text, failure_code text, captured boolean,
    created_at timestamptz, updated_at timestamptz
)
