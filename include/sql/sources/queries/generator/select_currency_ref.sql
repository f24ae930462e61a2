SELECT currency_code, minor_units FROM currency_ref ORDER BY currency_code
