SELECT count(*) FROM charge_label
