VACUUM customer, charge, payment_method
