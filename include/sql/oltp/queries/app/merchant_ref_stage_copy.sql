COPY merchant_ref_stage (merchant_id, country_code, default_currency_code, status) FROM STDIN WITH (FORMAT csv)
