-- Fail-closed mode (require_user_id=True): an audit row without a user aborts
-- the write. sqlaudit's connections stamp the user first (TEMP triggers fire
-- before these), so only writes with no known user reach this check.
CREATE TRIGGER main.sqlaudit_log_require_user BEFORE INSERT ON {{ audit_table }}
WHEN NEW.changed_by IS NULL
BEGIN
    SELECT RAISE(ABORT, 'sqlaudit: this write needs an acting user (require_user_id is on); use sqlaudit.context.audit_context(user_id=...) or get_user_id_callback');
END
