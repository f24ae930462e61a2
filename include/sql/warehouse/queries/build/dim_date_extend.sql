-- A contiguous calendar from the earliest to the latest date of either fact (same days whatever
-- the order facts arrived in).
WITH staged_day AS (
    SELECT created_date FROM staged_fact
    UNION ALL
    SELECT created_date FROM staged_charge
),

staged_range AS (
    SELECT min(created_date) AS first_day, max(created_date) AS last_day FROM staged_day
),

existing_range AS (
    SELECT min(date_day) AS first_day, max(date_day) AS last_day FROM marts.dim_date
),

wanted_range AS (
    SELECT least(s.first_day, e.first_day) AS first_day, greatest(s.last_day, e.last_day) AS last_day
    FROM staged_range AS s CROSS JOIN existing_range AS e
    WHERE s.first_day IS NOT NULL
),

calendar AS (
    SELECT generate_series(first_day, last_day, interval '1 day')::date AS date_day FROM wanted_range
)

INSERT INTO marts.dim_date
    (date_id, date_day, year_number, quarter_number, month_number, day_of_month, iso_week,
     iso_day_of_week, month_start, is_weekend)
SELECT to_char(date_day, 'YYYYMMDD')::int, date_day,
       extract(year FROM date_day)::int, extract(quarter FROM date_day)::int,
       extract(month FROM date_day)::int, extract(day FROM date_day)::int,
       extract(week FROM date_day)::int, extract(isodow FROM date_day)::int,
       date_trunc('month', date_day)::date, extract(isodow FROM date_day) IN (6, 7)
FROM calendar
ON CONFLICT (date_id) DO NOTHING
