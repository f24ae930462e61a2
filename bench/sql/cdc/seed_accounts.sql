-- bench/cdc_crash_torture.py: accounts present before the slot exists (they arrive by snapshot).
INSERT INTO account SELECT g, g % 7, NULL, g, 'seed' FROM generate_series(1, 500) AS g
