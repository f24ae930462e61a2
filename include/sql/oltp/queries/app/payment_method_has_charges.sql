SELECT EXISTS (SELECT 1 FROM charge WHERE payment_method_id = %(payment_method_id)s);
