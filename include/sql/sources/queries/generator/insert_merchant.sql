INSERT INTO merchant (
    merchant_id, legal_name, mcc, country_code, default_currency_code, payout_schedule, risk_tier_code,
    status, kyc_contact_name_enc, kyc_contact_email_enc, kyc_contact_phone_enc, kyc_email_bidx, created_at
) OVERRIDING SYSTEM VALUE
VALUES (
    %(merchant_id)s, %(legal_name)s, %(mcc)s, %(country_code)s, %(default_currency_code)s,
    %(payout_schedule)s, %(risk_tier_code)s, %(status)s, %(name_enc)s, %(email_enc)s, %(phone_enc)s,
    %(email_bidx)s, %(created_at)s
)
