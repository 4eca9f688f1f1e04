-- partition_audit_log(), end of the swap: the old log becomes the partition of
-- every time before the boundary; its CHECK constraint has served its purpose.
ALTER TABLE {{ audit_table }} ATTACH PARTITION {{ history }} FOR VALUES FROM (MINVALUE) TO ({{ boundary }})
-- sqlaudit:statement
ALTER TABLE {{ history }} DROP CONSTRAINT {{ check_name }}
