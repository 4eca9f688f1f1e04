-- ix_sqlaudit_log_user for a script (`sqlaudit sql`): MariaDB and MySQL index no
-- expression, so it is a prefix of changed_by (as sqlaudit.schema creates it).
-- IF NOT EXISTS: MariaDB only (MySQL has none for CREATE INDEX).
CREATE INDEX IF NOT EXISTS ix_sqlaudit_log_user ON {{ audit_table }} (changed_by({{ prefix }}), changed_at)
