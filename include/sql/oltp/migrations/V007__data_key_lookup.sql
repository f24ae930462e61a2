-- Ciphertexts carry the data-key id, not the customer id: decryption finds the wrapped key by it.
CREATE UNIQUE INDEX customer_data_key_key_id_uq ON customer_data_key (key_id);
