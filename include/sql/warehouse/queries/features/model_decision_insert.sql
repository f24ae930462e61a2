INSERT INTO features.model_decision (model_name, challenger_version, champion_version, training_set_id, run_id,
                                     challenger_pr_auc, champion_pr_auc, baseline_pr_auc, challenger_brier,
                                     champion_brier, promoted, reason)
VALUES (%(model_name)s, %(challenger_version)s, %(champion_version)s, %(training_set_id)s, %(run_id)s,
        %(challenger_pr_auc)s, %(champion_pr_auc)s, %(baseline_pr_auc)s, %(challenger_brier)s,
        %(champion_brier)s, %(promoted)s, %(reason)s)
RETURNING decision_id;
