-- Identifiers that change capture tokenises must not be blank: a token of "   " would join every
-- blank value across stores, so the tokeniser refuses it, and such a change could only be
-- dead-lettered. NULL stays allowed (a charge without a device or session). [[:space:]] covers
-- space, tab, newline, carriage return, vertical tab and form feed.
ALTER TABLE charge
    ADD CONSTRAINT charge_device_id_not_blank CHECK (device_id IS NULL OR device_id ~ '[^[:space:]]'),
    ADD CONSTRAINT charge_session_id_not_blank CHECK (session_id IS NULL OR session_id ~ '[^[:space:]]');
