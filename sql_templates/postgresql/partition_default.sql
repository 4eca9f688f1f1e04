-- The DEFAULT partition: any changed_at no range partition covers lands here, so
-- no write ever fails for a missing partition. maintain_audit_partitions() moves
-- its rows into the range partitions it creates. Its comment records the period
-- the log is partitioned by (read back from the catalog, never from Python state).
CREATE TABLE {{ partition }} PARTITION OF {{ audit_table }} DEFAULT
-- sqlaudit:statement
COMMENT ON TABLE {{ partition }} IS {{ mark }}
