-- Append-only guards of one partition of the audit table. UPDATE and DELETE are
-- refused by the parent's row trigger, which PostgreSQL clones onto every
-- partition (present and future); a statement-level TRUNCATE trigger is not
-- cloned, so each partition gets its own. Nothing is granted on a partition:
-- the application role reaches the log only through the trigger functions.
REVOKE ALL ON {{ partition }} FROM PUBLIC
-- sqlaudit:statement
DROP TRIGGER IF EXISTS sqlaudit_no_truncate ON {{ partition }}
-- sqlaudit:statement
CREATE TRIGGER sqlaudit_no_truncate BEFORE TRUNCATE ON {{ partition }}
    FOR EACH STATEMENT EXECUTE FUNCTION {{ protect_function }}()
