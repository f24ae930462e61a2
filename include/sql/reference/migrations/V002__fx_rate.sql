-- Daily FX rates: 1 unit of base_currency_code = rate units of quote_currency_code.
CREATE TABLE fx_rate (
    base_currency_code  char(3)        NOT NULL REFERENCES currency (currency_code),
    quote_currency_code char(3)        NOT NULL REFERENCES currency (currency_code),
    effective_date      date           NOT NULL,
    rate                numeric(20, 10) NOT NULL CHECK (rate > 0),
    source              text           NOT NULL DEFAULT 'manual',
    created_at          timestamptz    NOT NULL DEFAULT now(),
    PRIMARY KEY (base_currency_code, quote_currency_code, effective_date),
    CONSTRAINT fx_rate_distinct_currencies CHECK (base_currency_code <> quote_currency_code)
);
-- "Latest rate on or before day D" for a pair is the warehouse's lookup; the PK serves it.
-- Lookups by quote currency (reverse conversions) get their own index.
CREATE INDEX fx_rate_quote_idx ON fx_rate (quote_currency_code, base_currency_code, effective_date);
