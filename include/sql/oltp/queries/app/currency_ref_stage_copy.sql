COPY currency_ref_stage (currency_code, minor_units) FROM STDIN WITH (FORMAT csv)
