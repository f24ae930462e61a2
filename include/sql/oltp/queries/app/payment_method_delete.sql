DELETE FROM payment_method WHERE payment_method_id = %(payment_method_id)s;
