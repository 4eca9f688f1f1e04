-- Make the audit table append-only: UPDATE and DELETE are refused, whoever runs
-- them (SIGNAL aborts the statement). The one exception is DELETE of records
-- older than the bound that sqlaudit.ddl.prune_audit_log() sets in the session
-- variable @sqlaudit_prune_before for the length of its DELETE (prune.sql).
-- TRUNCATE fires no trigger on MariaDB or MySQL: it is refused only by not
-- granting DROP on the log (docs/mariadb.md).
-- IF NOT EXISTS (MariaDB 10.1.4+, MySQL 8.0.29+): re-installing never leaves
-- the log unguarded, not even between two statements.
CREATE TRIGGER IF NOT EXISTS {{ no_update_trigger }} BEFORE UPDATE ON {{ audit_table }} FOR EACH ROW
    SIGNAL SQLSTATE '45000'
    SET MESSAGE_TEXT = 'sqlaudit: UPDATE on sqlaudit_log is refused: the audit trail is append-only'
-- sqlaudit:statement
CREATE TRIGGER IF NOT EXISTS {{ no_delete_trigger }} BEFORE DELETE ON {{ audit_table }} FOR EACH ROW
BEGIN
    IF @sqlaudit_prune_before IS NULL OR NOT (OLD.changed_at < @sqlaudit_prune_before) THEN
        SIGNAL SQLSTATE '45000'
        SET MESSAGE_TEXT = 'sqlaudit: DELETE on sqlaudit_log is refused: the audit trail is append-only';
    END IF;
END
