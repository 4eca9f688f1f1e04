-- The fingerprint read back by audit_status() and Alembic autogenerate.
COMMENT ON FUNCTION {{ function_name }}() IS {{ fingerprint }}
