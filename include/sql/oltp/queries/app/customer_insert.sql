-- Personal fields follow in customer_set_personal_data.sql: their ciphertexts are bound to the id.
INSERT INTO customer (merchant_id, country_code)
VALUES (%(merchant_id)s, %(country_code)s)
RETURNING customer_id;
