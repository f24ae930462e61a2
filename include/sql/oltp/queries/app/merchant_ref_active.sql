SELECT merchant_id, default_currency_code FROM merchant_ref WHERE status = 'active' ORDER BY merchant_id;
