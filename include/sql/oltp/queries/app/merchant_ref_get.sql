SELECT merchant_id, status, default_currency_code FROM merchant_ref WHERE merchant_id = %(merchant_id)s;
