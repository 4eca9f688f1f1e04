-- A log made by an earlier sqlaudit gets the columns and index added since
-- (no-ops when they exist), before any trigger function that writes them.
ALTER TABLE {{ audit_table }}
    ADD COLUMN IF NOT EXISTS context jsonb,
    ADD COLUMN IF NOT EXISTS application_name text,
    ADD COLUMN IF NOT EXISTS client_addr text
-- sqlaudit:statement
CREATE INDEX IF NOT EXISTS ix_sqlaudit_log_transaction ON {{ audit_table }} (transaction_id)
-- sqlaudit:statement
-- Make the audit table append-only: UPDATE, DELETE and TRUNCATE are refused,
-- whoever runs them (superusers included). The one exception is DELETE of
-- records older than the bound that sqlaudit.ddl.prune_audit_log() sets in the
-- transaction-local setting sqlaudit.prune_before.
CREATE OR REPLACE FUNCTION {{ protect_function }}()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $sqlaudit$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.changed_at < NULLIF(current_setting('sqlaudit.prune_before', true), '')::timestamptz THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'sqlaudit: % on %.% is refused: the audit trail is append-only',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING HINT = 'Remove old records with sqlaudit.ddl.prune_audit_log().';
END
$sqlaudit$
-- sqlaudit:statement
DROP TRIGGER IF EXISTS sqlaudit_append_only ON {{ audit_table }}
-- sqlaudit:statement
CREATE TRIGGER sqlaudit_append_only BEFORE UPDATE OR DELETE ON {{ audit_table }}
    FOR EACH ROW EXECUTE FUNCTION {{ protect_function }}()
-- sqlaudit:statement
DROP TRIGGER IF EXISTS sqlaudit_no_truncate ON {{ audit_table }}
-- sqlaudit:statement
CREATE TRIGGER sqlaudit_no_truncate BEFORE TRUNCATE ON {{ audit_table }}
    FOR EACH STATEMENT EXECUTE FUNCTION {{ protect_function }}()
