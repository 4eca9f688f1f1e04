-- Make the seal table (sqlaudit.integrity) append-only: UPDATE and DELETE are
-- refused, whoever runs them (SIGNAL aborts the statement); there is no
-- sanctioned removal. TRUNCATE fires no trigger on MariaDB or MySQL: it is
-- refused only by not granting DROP on the table (docs/integrity.md).
CREATE TRIGGER IF NOT EXISTS {{ no_update_trigger }} BEFORE UPDATE ON {{ seal_table }} FOR EACH ROW
    SIGNAL SQLSTATE '45000'
    SET MESSAGE_TEXT = 'sqlaudit: UPDATE on sqlaudit_seal is refused: the seal chain is append-only'
-- sqlaudit:statement
CREATE TRIGGER IF NOT EXISTS {{ no_delete_trigger }} BEFORE DELETE ON {{ seal_table }} FOR EACH ROW
    SIGNAL SQLSTATE '45000'
    SET MESSAGE_TEXT = 'sqlaudit: DELETE on sqlaudit_seal is refused: the seal chain is append-only'
