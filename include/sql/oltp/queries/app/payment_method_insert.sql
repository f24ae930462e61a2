INSERT INTO payment_method (customer_id, token, brand, funding, last4, exp_month, exp_year,
                            bin_country_code, fingerprint)
VALUES (%(customer_id)s, %(token)s, %(brand)s, %(funding)s, %(last4)s, %(exp_month)s, %(exp_year)s,
        %(bin_country_code)s, %(fingerprint)s)
RETURNING payment_method_id;
