SELECT kyc_email_bidx FROM merchant WHERE kyc_email_bidx = ANY(%(bidx)s)
