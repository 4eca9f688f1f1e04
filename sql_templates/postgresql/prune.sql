-- sqlaudit.ddl.prune_audit_log(): the only sanctioned removal of audit records.
SELECT set_config('sqlaudit.prune_before', :bound, true)
-- sqlaudit:statement
SELECT set_config('sqlaudit.prune_before', '', true)
