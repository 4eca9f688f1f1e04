-- One AFTER trigger per operation, each writing one row into the audit table
-- (and one for updates that change the key, recorded as delete + insert).
-- Values are encoded as JSON text by sqlaudit (reals keep 21 digits, blobs are
-- hex) so no value can make the application's write fail. changed_by is left
-- NULL here: sqlaudit's own connections stamp it through a TEMP trigger
-- (context.sql), any other connection is recorded without a user.
-- The /* sqlaudit:{...} */ comment is the fingerprint read back by audit_status().
DROP TRIGGER IF EXISTS {{ insert_trigger }}
-- sqlaudit:statement
CREATE TRIGGER {{ insert_trigger }} AFTER INSERT ON {{ table }} FOR EACH ROW {{ fingerprint }}
BEGIN
    INSERT INTO {{ audit_table }} (
        table_schema, table_name, resource_id, operation, changed_at,
        changed_by, db_role, transaction_id, reason, old_data, new_data)
    VALUES (
        NULL, {{ table_literal }}, {{ insert_key }}, 'insert', {{ now }},
        NULL, NULL, NULL, NULL, NULL, {{ insert_data }});
END
-- sqlaudit:statement
DROP TRIGGER IF EXISTS {{ update_trigger }}
-- sqlaudit:statement
CREATE TRIGGER {{ update_trigger }} AFTER UPDATE ON {{ table }} FOR EACH ROW {{ fingerprint }}
WHEN {{ update_when }}
BEGIN
    INSERT INTO {{ audit_table }} (
        table_schema, table_name, resource_id, operation, changed_at,
        changed_by, db_role, transaction_id, reason, old_data, new_data)
    VALUES (
        NULL, {{ table_literal }}, {{ update_key }}, 'update', {{ now }},
        NULL, NULL, NULL, NULL, {{ update_old_data }}, {{ update_new_data }});
END
-- sqlaudit:statement
DROP TRIGGER IF EXISTS {{ rekey_trigger }}
-- sqlaudit:statement
CREATE TRIGGER {{ rekey_trigger }} AFTER UPDATE ON {{ table }} FOR EACH ROW {{ fingerprint }}
WHEN {{ key_changed }}
BEGIN
    -- An UPDATE that changes the key is recorded per key, as on PostgreSQL.
    INSERT INTO {{ audit_table }} (
        table_schema, table_name, resource_id, operation, changed_at,
        changed_by, db_role, transaction_id, reason, old_data, new_data)
    VALUES (
        NULL, {{ table_literal }}, {{ delete_key }}, 'delete', {{ now }},
        NULL, NULL, NULL, NULL, {{ delete_data }}, NULL);
    INSERT INTO {{ audit_table }} (
        table_schema, table_name, resource_id, operation, changed_at,
        changed_by, db_role, transaction_id, reason, old_data, new_data)
    VALUES (
        NULL, {{ table_literal }}, {{ insert_key }}, 'insert', {{ now }},
        NULL, NULL, NULL, NULL, NULL, {{ insert_data }});
END
-- sqlaudit:statement
DROP TRIGGER IF EXISTS {{ delete_trigger }}
-- sqlaudit:statement
CREATE TRIGGER {{ delete_trigger }} AFTER DELETE ON {{ table }} FOR EACH ROW {{ fingerprint }}
BEGIN
    INSERT INTO {{ audit_table }} (
        table_schema, table_name, resource_id, operation, changed_at,
        changed_by, db_role, transaction_id, reason, old_data, new_data)
    VALUES (
        NULL, {{ table_literal }}, {{ delete_key }}, 'delete', {{ now }},
        NULL, NULL, NULL, NULL, {{ delete_data }}, NULL);
END
