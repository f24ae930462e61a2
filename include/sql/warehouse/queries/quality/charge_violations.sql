-- Charge facts in scope breaking a rule, one row per (check, charge): key unique, required values
-- present, every foreign key resolving to a real or inferred member (the merchant version must
-- cover the attempt's time), status and failure code consistent, amount positive.
WITH scoped_charge AS (
    SELECT f.*
    FROM marts.fct_charge AS f
    JOIN affected_charge USING (charge_id)
),

violation AS (
    SELECT 'fct_charge.pk_unique' AS check_name, charge_id,
           format('%%s rows share the key', count(*)) AS detail
    FROM scoped_charge GROUP BY charge_id HAVING count(*) > 1
    UNION ALL
    SELECT 'fct_charge.required', charge_id,
           'missing payment_intent_id, status, currency_code, amount or created_at'
    FROM scoped_charge
    WHERE payment_intent_id IS NULL OR status IS NULL OR currency_code IS NULL OR amount IS NULL
       OR created_at IS NULL
    UNION ALL
    SELECT 'fct_charge.merchant_version_id', f.charge_id,
           CASE WHEN f.merchant_id IS NULL
                THEN format('no merchant: payment intent %%s is not staged', f.payment_intent_id)
                ELSE format('merchant %%s has no version %%s valid at %%s', f.merchant_id,
                            f.merchant_version_id, f.created_at) END
    FROM scoped_charge AS f
    WHERE NOT EXISTS (
        SELECT 1 FROM marts.dim_merchant AS d
        WHERE d.merchant_version_id = f.merchant_version_id AND d.merchant_id = f.merchant_id
          AND f.created_at >= d.valid_from AND f.created_at < d.valid_to
    )
    UNION ALL
    SELECT 'fct_charge.customer_id', f.charge_id, format('customer %%s not in dim_customer', f.customer_id)
    FROM scoped_charge AS f
    WHERE f.customer_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM marts.dim_customer AS d WHERE d.customer_id = f.customer_id)
    UNION ALL
    SELECT 'fct_charge.payment_method_id', f.charge_id,
           format('payment method %%s not in dim_payment_method', f.payment_method_id)
    FROM scoped_charge AS f
    WHERE f.payment_method_id IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM marts.dim_payment_method AS d WHERE d.payment_method_id = f.payment_method_id
      )
    UNION ALL
    SELECT 'fct_charge.currency_code', f.charge_id,
           format('currency %%s not in dim_currency or not chargeable (no minor units)', f.currency_code)
    FROM scoped_charge AS f
    WHERE f.currency_code IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM marts.dim_currency AS d
          WHERE d.currency_code = f.currency_code AND d.minor_units IS NOT NULL
      )
    UNION ALL
    SELECT 'fct_charge.card_country_code', f.charge_id, format('country %%s not in dim_country', f.card_country_code)
    FROM scoped_charge AS f
    WHERE f.card_country_code IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM marts.dim_country AS d WHERE d.country_code = f.card_country_code)
    UNION ALL
    SELECT 'fct_charge.created_date_id', f.charge_id, format('date %%s not in dim_date', f.created_date_id)
    FROM scoped_charge AS f
    WHERE f.created_date_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM marts.dim_date AS d WHERE d.date_id = f.created_date_id)
    UNION ALL
    SELECT 'fct_charge.status', charge_id, format('unknown status %%s', status)
    FROM scoped_charge WHERE status IS NOT NULL AND outcome IS NULL
    UNION ALL
    SELECT 'fct_charge.failure_code_iff_declined', charge_id,
           format('status %%s with failure code %%s', status, coalesce(failure_code, 'NULL'))
    FROM scoped_charge WHERE (outcome = 'declined') <> (failure_code IS NOT NULL AND btrim(failure_code) <> '')
    UNION ALL
    SELECT 'fct_charge.amount_positive', charge_id, format('amount %%s', amount)
    FROM scoped_charge WHERE amount <= 0
)

SELECT check_name, charge_id::text AS row_key, detail
FROM violation
ORDER BY check_name, charge_id
LIMIT %(limit)s
