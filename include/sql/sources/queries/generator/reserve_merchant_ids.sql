SELECT setval(
    pg_get_serial_sequence('merchant', 'merchant_id'),
    nextval(pg_get_serial_sequence('merchant', 'merchant_id')) + %(count)s - 1
)
