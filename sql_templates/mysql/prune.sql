-- prune_audit_log() lifts the DELETE guard (protect.sql) for records older than
-- :bound (UTC) in this session, runs its DELETE, and puts the guard back.
SET @sqlaudit_prune_before = :bound
-- sqlaudit:statement
SET @sqlaudit_prune_before = NULL
