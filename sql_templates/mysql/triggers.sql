-- One AFTER ... FOR EACH ROW trigger per operation (MariaDB and MySQL have row
-- triggers only), each writing one row into the audit table per changed row:
-- an insert or a delete with every tracked column, an update with the tracked
-- columns that changed (NULL-safe, byte-wise: <=> on the binary forms), none
-- for an update that changed nothing. An update that changes the key is
-- recorded per key, as delete + insert, as on the other dialects.
-- The acting user, reason, context and transaction come from the session's user
-- variables, set by sqlaudit's hook for each transaction and cleared at its end
-- (raw SQL: SET @sqlaudit_user_id = '42'). Values are encoded as JSON by
-- sqlaudit (see sqlaudit/dialects/mysql.py) so that retrieval reads them back typed.
-- Each body ends with the fingerprint that audit_status() reads back, a string
-- in a branch that never runs (IF FALSE THEN DO 'sqlaudit:{...}'; END IF;): not
-- a comment, because the mariadb and mysql clients strip comments, and not a
-- declared variable, which would be allocated on every row.
DROP TRIGGER IF EXISTS {{ insert_trigger }}
-- sqlaudit:statement
CREATE TRIGGER {{ insert_trigger }} AFTER INSERT ON {{ table }} FOR EACH ROW
BEGIN
{{ require_user }}    INSERT INTO {{ audit_table }} (
        table_schema, table_name, resource_id, operation, changed_at,
        changed_by, db_role, transaction_id, reason, old_data, new_data,
        context, application_name, client_addr)
    VALUES (
        {{ schema_literal }}, {{ table_literal }}, {{ insert_key }}, 'insert', UTC_TIMESTAMP(6),
        IF(CHAR_LENGTH(@sqlaudit_user_id) > 0, @sqlaudit_user_id, NULL), SUBSTRING_INDEX(USER(), '@', 1), @sqlaudit_transaction_id,
        IF(CHAR_LENGTH(@sqlaudit_reason) > 0, @sqlaudit_reason, NULL), NULL, {{ insert_data }},
        IF(CHAR_LENGTH(@sqlaudit_context) > 0, @sqlaudit_context, NULL), NULL, SUBSTRING_INDEX(USER(), '@', -1));
{{ fingerprint }}
END
-- sqlaudit:statement
DROP TRIGGER IF EXISTS {{ update_trigger }}
-- sqlaudit:statement
CREATE TRIGGER {{ update_trigger }} AFTER UPDATE ON {{ table }} FOR EACH ROW
BEGIN
    IF {{ key_changed }} THEN
{{ require_user }}        INSERT INTO {{ audit_table }} (
            table_schema, table_name, resource_id, operation, changed_at,
            changed_by, db_role, transaction_id, reason, old_data, new_data,
            context, application_name, client_addr)
        VALUES (
            {{ schema_literal }}, {{ table_literal }}, {{ delete_key }}, 'delete', UTC_TIMESTAMP(6),
            IF(CHAR_LENGTH(@sqlaudit_user_id) > 0, @sqlaudit_user_id, NULL), SUBSTRING_INDEX(USER(), '@', 1), @sqlaudit_transaction_id,
            IF(CHAR_LENGTH(@sqlaudit_reason) > 0, @sqlaudit_reason, NULL), {{ delete_data }}, NULL,
            IF(CHAR_LENGTH(@sqlaudit_context) > 0, @sqlaudit_context, NULL), NULL, SUBSTRING_INDEX(USER(), '@', -1)),
        (
            {{ schema_literal }}, {{ table_literal }}, {{ insert_key }}, 'insert', UTC_TIMESTAMP(6),
            IF(CHAR_LENGTH(@sqlaudit_user_id) > 0, @sqlaudit_user_id, NULL), SUBSTRING_INDEX(USER(), '@', 1), @sqlaudit_transaction_id,
            IF(CHAR_LENGTH(@sqlaudit_reason) > 0, @sqlaudit_reason, NULL), NULL, {{ insert_data }},
            IF(CHAR_LENGTH(@sqlaudit_context) > 0, @sqlaudit_context, NULL), NULL, SUBSTRING_INDEX(USER(), '@', -1));
    ELSEIF {{ any_changed }} THEN
{{ require_user }}        INSERT INTO {{ audit_table }} (
            table_schema, table_name, resource_id, operation, changed_at,
            changed_by, db_role, transaction_id, reason, old_data, new_data,
            context, application_name, client_addr)
        VALUES (
            {{ schema_literal }}, {{ table_literal }}, {{ update_key }}, 'update', UTC_TIMESTAMP(6),
            IF(CHAR_LENGTH(@sqlaudit_user_id) > 0, @sqlaudit_user_id, NULL), SUBSTRING_INDEX(USER(), '@', 1), @sqlaudit_transaction_id,
            IF(CHAR_LENGTH(@sqlaudit_reason) > 0, @sqlaudit_reason, NULL),
            {{ changed_old }},
            {{ changed_new }},
            IF(CHAR_LENGTH(@sqlaudit_context) > 0, @sqlaudit_context, NULL), NULL, SUBSTRING_INDEX(USER(), '@', -1));
    END IF;
{{ fingerprint }}
END
-- sqlaudit:statement
DROP TRIGGER IF EXISTS {{ delete_trigger }}
-- sqlaudit:statement
CREATE TRIGGER {{ delete_trigger }} AFTER DELETE ON {{ table }} FOR EACH ROW
BEGIN
{{ require_user }}    INSERT INTO {{ audit_table }} (
        table_schema, table_name, resource_id, operation, changed_at,
        changed_by, db_role, transaction_id, reason, old_data, new_data,
        context, application_name, client_addr)
    VALUES (
        {{ schema_literal }}, {{ table_literal }}, {{ delete_key }}, 'delete', UTC_TIMESTAMP(6),
        IF(CHAR_LENGTH(@sqlaudit_user_id) > 0, @sqlaudit_user_id, NULL), SUBSTRING_INDEX(USER(), '@', 1), @sqlaudit_transaction_id,
        IF(CHAR_LENGTH(@sqlaudit_reason) > 0, @sqlaudit_reason, NULL), {{ delete_data }}, NULL,
        IF(CHAR_LENGTH(@sqlaudit_context) > 0, @sqlaudit_context, NULL), NULL, SUBSTRING_INDEX(USER(), '@', -1));
{{ fingerprint }}
END
