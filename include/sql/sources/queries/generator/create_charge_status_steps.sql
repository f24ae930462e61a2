CREATE TEMP TABLE generator_charge_status_step (
    charge_id bigint   NOT NULL,
    step      smallint NOT NULL,
    status    text     NOT NULL,
    PRIMARY KEY (step, charge_id)
) ON COMMIT DROP
