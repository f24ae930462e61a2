-- Refresh a marts materialized view through the owner's function (warehouse migration V002).
SELECT security.refresh_marts_view(%(name)s, %(concurrent)s)
