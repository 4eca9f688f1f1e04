-- Make the audit table append-only. prune_audit_log() lifts the DELETE guard
-- only inside its own transaction (SQLite DDL is transactional).
CREATE TRIGGER IF NOT EXISTS main.sqlaudit_log_no_update BEFORE UPDATE ON {{ audit_table }}
BEGIN
    SELECT RAISE(ABORT, 'sqlaudit: UPDATE on sqlaudit_log is refused: the audit trail is append-only');
END
-- sqlaudit:statement
CREATE TRIGGER IF NOT EXISTS main.sqlaudit_log_no_delete BEFORE DELETE ON {{ audit_table }}
BEGIN
    SELECT RAISE(ABORT, 'sqlaudit: DELETE on sqlaudit_log is refused: the audit trail is append-only; remove old records with sqlaudit.ddl.prune_audit_log()');
END
-- sqlaudit:statement
DROP TRIGGER IF EXISTS main.sqlaudit_log_require_user
