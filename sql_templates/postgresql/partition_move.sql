-- maintain_audit_partitions() when the DEFAULT partition holds rows of a range it
-- must create (PostgreSQL refuses to create that partition then). In one
-- transaction, holding ACCESS EXCLUSIVE on the parent: detach DEFAULT and set it
-- aside (no DELETE: the append-only guards stay untouched), create the range
-- partitions and a new DEFAULT (partition_range/default/protect.sql), re-insert
-- every set-aside row through the parent (routed to its partition, same id),
-- then drop the set-aside table. A failure rolls all of it back.
ALTER TABLE {{ audit_table }} DETACH PARTITION {{ partition }}
-- sqlaudit:statement
ALTER TABLE {{ partition }} RENAME TO {{ aside_name }}
