-- Make the seal table (sqlaudit.integrity) append-only: UPDATE, DELETE and
-- TRUNCATE are refused, whoever runs them; there is no sanctioned removal.
-- Nothing is granted to PUBLIC.
CREATE OR REPLACE FUNCTION {{ protect_function }}()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $sqlaudit$
BEGIN
    RAISE EXCEPTION 'sqlaudit: % on %.% is refused: the seal chain is append-only',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME;
END
$sqlaudit$
-- sqlaudit:statement
REVOKE ALL ON FUNCTION {{ protect_function }}() FROM PUBLIC
-- sqlaudit:statement
REVOKE ALL ON {{ seal_table }} FROM PUBLIC
-- sqlaudit:statement
DROP TRIGGER IF EXISTS sqlaudit_seal_append_only ON {{ seal_table }}
-- sqlaudit:statement
CREATE TRIGGER sqlaudit_seal_append_only BEFORE UPDATE OR DELETE ON {{ seal_table }}
    FOR EACH ROW EXECUTE FUNCTION {{ protect_function }}()
-- sqlaudit:statement
DROP TRIGGER IF EXISTS sqlaudit_seal_no_truncate ON {{ seal_table }}
-- sqlaudit:statement
CREATE TRIGGER sqlaudit_seal_no_truncate BEFORE TRUNCATE ON {{ seal_table }}
    FOR EACH STATEMENT EXECUTE FUNCTION {{ protect_function }}()
