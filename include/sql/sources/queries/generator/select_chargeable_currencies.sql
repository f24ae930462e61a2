SELECT currency_code, minor_units FROM currency WHERE minor_units IS NOT NULL ORDER BY currency_code
