-- Run after the audit table is dropped (drop_all): its triggers went with it.
DROP FUNCTION IF EXISTS {{ protect_function }}()
