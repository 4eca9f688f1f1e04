-- The trigger function of one audited table. Every trigger is statement-level
-- and reads the transition tables, so each statement costs one set-based
-- INSERT ... SELECT into the audit table, whatever its row count.
-- UPDATE pairs old and new rows by key (a FULL JOIN, never by scan order) and
-- filters rows whose tracked values did not change before any JSON work. A
-- statement that changes key values is recorded per key: a key that vanished
-- as a delete, a key that appeared as an insert.
-- The acting user comes from the transaction-local setting sqlaudit.user_id
-- (set_config(..., true) or SET LOCAL), NULL when unset; so do the reason
-- (sqlaudit.reason) and the context (sqlaudit.context, a JSON object: text
-- that is not one is kept as {"invalid": text}, so no setting can make the
-- application's write fail). application_name and the client address are
-- the writing session's own.
-- SECURITY DEFINER: the function writes the audit table with its owner's
-- rights, so application roles need no grant on it. The audit table is
-- schema-qualified and search_path is pinned to pg_catalog, pg_temp, so no
-- schema or TEMP table a user controls can redirect it. EXECUTE is revoked
-- from PUBLIC (firing a trigger does not check it), and the function refuses
-- to run unless fired AFTER ... FOR EACH STATEMENT by the table it was
-- generated for (or a partition or inheritance child of it), so nobody can
-- attach it to another table to write forged history.
-- The SET clauses pin every setting that changes the text form of a value
-- (floats, dates, intervals, bytea, money, xml, time zones), so what is
-- recorded never depends on the writing session's settings.
-- jit = off: the session caches the statement plans below. A plan made for a
-- 100,000-row statement carries a cost estimate above jit_above_cost, and
-- reusing it for a later one-row UPDATE on the same pooled connection made
-- PostgreSQL JIT-compile it again on every call (about 300 ms per commit in
-- the benchmark). The work here is JSON building and index inserts, which JIT
-- does not speed up, so no statement size gains from it.
CREATE OR REPLACE FUNCTION {{ function_name }}()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET jit = off
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 3
SET DateStyle = 'ISO, MDY'
SET IntervalStyle = 'postgres'
SET TimeZone = 'UTC'
SET bytea_output = 'hex'
SET lc_monetary = 'C'
SET xmlbinary = 'base64'
SET xmloption = 'content'
AS {{ dollar }}
DECLARE
    _table oid := to_regclass({{ table_regclass }});
    _actor text := NULLIF(current_setting('sqlaudit.user_id', true), '');
    _reason text := NULLIF(current_setting('sqlaudit.reason', true), '');
    _txid bigint := pg_current_xact_id()::text::bigint;
    _now timestamptz := clock_timestamp();
    _context_text text := NULLIF(current_setting('sqlaudit.context', true), '');
    _context jsonb;
    _application text := NULLIF(current_setting('application_name'), '');
    _client text := host(inet_client_addr());
{{ require_user_declare }}BEGIN
    IF TG_RELID IS DISTINCT FROM _table THEN
        -- Not the table itself: only its partitions and inheritance children may fire it.
        IF _table IS NULL OR NOT EXISTS (
            WITH RECURSIVE tree(relid) AS (
                SELECT i.inhrelid FROM pg_inherits AS i WHERE i.inhparent = _table
                UNION
                SELECT i.inhrelid FROM pg_inherits AS i JOIN tree ON i.inhparent = tree.relid)
            SELECT 1 FROM tree WHERE tree.relid = TG_RELID)
        THEN
            _table := NULL;
        END IF;
    END IF;
    IF _table IS NULL OR TG_WHEN <> 'AFTER' OR TG_LEVEL <> 'STATEMENT' THEN
        -- (no percent-sign placeholders: this SQL must run verbatim through drivers)
        RAISE EXCEPTION USING
            MESSAGE = 'sqlaudit: ' || {{ function_literal }} || ' may only be fired by its AFTER'
                || ' ... FOR EACH STATEMENT triggers on ' || {{ table_regclass }} || ' (fired '
                || TG_WHEN || ' ' || TG_LEVEL || ' on ' || TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME || ')',
            HINT = 'Audit triggers are installed by sqlaudit; re-install them with '
                || 'install_audit_triggers() if the table was renamed.';
    END IF;
    IF _context_text IS NOT NULL THEN
        BEGIN
            _context := _context_text::jsonb;
        EXCEPTION WHEN others THEN
            _context := NULL;
        END;
        IF _context IS NULL OR jsonb_typeof(_context) <> 'object' THEN
            _context := jsonb_build_object('invalid', _context_text);
        END IF;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO {{ audit_table }} (
            table_schema, table_name, resource_id, operation, changed_at,
            changed_by, db_role, transaction_id, reason, old_data, new_data,
            context, application_name, client_addr)
        SELECT
            {{ schema_literal }}, {{ table_literal }},
            CASE WHEN n.{{ first_key }} IS NULL THEN {{ delete_key }} ELSE {{ insert_key }} END,
            CASE WHEN o.{{ first_key }} IS NULL THEN 'insert'
                 WHEN n.{{ first_key }} IS NULL THEN 'delete' ELSE 'update' END,
            _now, _actor, session_user, _txid, _reason,
            CASE WHEN o.{{ first_key }} IS NULL THEN NULL
                 WHEN n.{{ first_key }} IS NULL THEN {{ delete_data }}
                 ELSE {{ update_old_data }} - s.same END,
            CASE WHEN n.{{ first_key }} IS NULL THEN NULL
                 WHEN o.{{ first_key }} IS NULL THEN {{ insert_data }}
                 ELSE {{ update_new_data }} - s.same END,
            _context, _application, _client
        FROM sqlaudit_old_rows AS o
        FULL JOIN sqlaudit_new_rows AS n ON {{ key_join }}
        CROSS JOIN LATERAL (SELECT {{ update_unchanged }} AS same) AS s
        WHERE o.{{ first_key }} IS NULL OR n.{{ first_key }} IS NULL OR {{ update_changed }};
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO {{ audit_table }} (
            table_schema, table_name, resource_id, operation, changed_at,
            changed_by, db_role, transaction_id, reason, old_data, new_data,
            context, application_name, client_addr)
        SELECT
            {{ schema_literal }}, {{ table_literal }}, {{ insert_key }}, 'insert', _now,
            _actor, session_user, _txid, _reason, NULL, {{ insert_data }},
            _context, _application, _client
        FROM sqlaudit_new_rows AS n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO {{ audit_table }} (
            table_schema, table_name, resource_id, operation, changed_at,
            changed_by, db_role, transaction_id, reason, old_data, new_data,
            context, application_name, client_addr)
        SELECT
            {{ schema_literal }}, {{ table_literal }}, {{ delete_key }}, 'delete', _now,
            _actor, session_user, _txid, _reason, {{ delete_data }}, NULL,
            _context, _application, _client
        FROM sqlaudit_old_rows AS o;
    ELSIF TG_OP = 'TRUNCATE' THEN
        -- TRUNCATE of the tracked table also fires its partitions' triggers, in
        -- the same statement: record it once, from the table itself.
        IF TG_RELID = _table THEN
            PERFORM set_config('sqlaudit.truncated', _table::text || ' ' || statement_timestamp()::text, true);
        ELSIF current_setting('sqlaudit.truncated', true) = _table::text || ' ' || statement_timestamp()::text THEN
            RETURN NULL;
        END IF;
        INSERT INTO {{ audit_table }} (
            table_schema, table_name, resource_id, operation, changed_at,
            changed_by, db_role, transaction_id, reason, old_data, new_data,
            context, application_name, client_addr)
        VALUES (
            {{ schema_literal }}, {{ table_literal }}, NULL, 'truncate', _now,
            _actor, session_user, _txid, _reason, NULL, NULL,
            _context, _application, _client);
    END IF;
{{ require_user_check }}
    RETURN NULL;
END
{{ dollar }}
-- sqlaudit:statement
-- Nobody but the owner may execute the function directly (triggers fire it regardless).
REVOKE ALL ON FUNCTION {{ function_name }}() FROM PUBLIC
