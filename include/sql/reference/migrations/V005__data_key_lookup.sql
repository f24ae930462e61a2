-- Ciphertexts carry the data-key id, not the merchant id: decryption finds the wrapped key by it.
CREATE UNIQUE INDEX merchant_data_key_key_id_uq ON merchant_data_key (key_id);
