-- prune_audit_log() on a partitioned log: a partition whose whole range is older
-- than the cutoff is detached and dropped (no per-row DELETE; its rows were
-- counted and, with seals, digested into the prune entry first).
ALTER TABLE {{ audit_table }} DETACH PARTITION {{ partition }}
-- sqlaudit:statement
DROP TABLE {{ partition }}
