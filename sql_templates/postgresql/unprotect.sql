-- Run by sqlaudit.ddl.drop_audit_log() after the audit table is dropped: its triggers went with it.
DROP FUNCTION IF EXISTS {{ protect_function }}()
