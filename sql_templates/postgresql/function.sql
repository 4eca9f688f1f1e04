-- The trigger function of one audited table. INSERT, DELETE and TRUNCATE run
-- once per statement and read the transition tables (set-based); UPDATE runs
-- once per changed row (its WHEN clause skips no-op updates before any JSON
-- work) so old and new values are always paired exactly.
-- Values are JSON; the acting user comes from the transaction-local setting
-- sqlaudit.user_id (set_config(..., true) or SET LOCAL), NULL when unset.
CREATE OR REPLACE FUNCTION {{ function_name }}()
RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS {{ dollar }}
DECLARE
    _actor text := NULLIF(current_setting('sqlaudit.user_id', true), '');
    _reason text := NULLIF(current_setting('sqlaudit.reason', true), '');
    _txid bigint := pg_current_xact_id()::text::bigint;
    _now timestamptz := clock_timestamp();
    _same text[];
BEGIN
    IF TG_OP = 'UPDATE' THEN
        _same := {{ update_unchanged }};
        INSERT INTO {{ audit_table }} (
            table_schema, table_name, resource_id, operation, changed_at,
            changed_by, db_role, transaction_id, reason, old_data, new_data)
        VALUES (
            {{ schema_literal }}, {{ table_literal }}, {{ update_key }}, 'update', _now,
            _actor, session_user, _txid, _reason,
            {{ update_old_data }} - _same,
            {{ update_new_data }} - _same);
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO {{ audit_table }} (
            table_schema, table_name, resource_id, operation, changed_at,
            changed_by, db_role, transaction_id, reason, old_data, new_data)
        SELECT
            {{ schema_literal }}, {{ table_literal }}, {{ insert_key }}, 'insert', _now,
            _actor, session_user, _txid, _reason, NULL, {{ insert_data }}
        FROM sqlaudit_new_rows AS n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO {{ audit_table }} (
            table_schema, table_name, resource_id, operation, changed_at,
            changed_by, db_role, transaction_id, reason, old_data, new_data)
        SELECT
            {{ schema_literal }}, {{ table_literal }}, {{ delete_key }}, 'delete', _now,
            _actor, session_user, _txid, _reason, {{ delete_data }}, NULL
        FROM sqlaudit_old_rows AS o;
    ELSIF TG_OP = 'TRUNCATE' THEN
        INSERT INTO {{ audit_table }} (
            table_schema, table_name, resource_id, operation, changed_at,
            changed_by, db_role, transaction_id, reason, old_data, new_data)
        VALUES (
            {{ schema_literal }}, {{ table_literal }}, NULL, 'truncate', _now,
            _actor, session_user, _txid, _reason, NULL, NULL);
    END IF;
    RETURN NULL;
END
{{ dollar }}
