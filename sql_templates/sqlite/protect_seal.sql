-- Make the seal table (sqlaudit.integrity) append-only; there is no sanctioned removal.
CREATE TRIGGER IF NOT EXISTS main.sqlaudit_seal_no_update BEFORE UPDATE ON {{ seal_table }}
BEGIN
    SELECT RAISE(ABORT, 'sqlaudit: UPDATE on sqlaudit_seal is refused: the seal chain is append-only');
END
-- sqlaudit:statement
CREATE TRIGGER IF NOT EXISTS main.sqlaudit_seal_no_delete BEFORE DELETE ON {{ seal_table }}
BEGIN
    SELECT RAISE(ABORT, 'sqlaudit: DELETE on sqlaudit_seal is refused: the seal chain is append-only');
END
