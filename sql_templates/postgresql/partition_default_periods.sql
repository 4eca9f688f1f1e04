-- maintain_audit_partitions(): the past periods (before the current one) that
-- rows in the DEFAULT partition belong to: history written while maintenance
-- did not run, or backfilled. Each gets its own range partition, so a prune
-- drops it whole instead of deleting row by row in DEFAULT. Weeks start on
-- Monday (ISO), as the partitions sqlaudit creates do.
SELECT DISTINCT date_trunc({{ period }}, changed_at AT TIME ZONE 'UTC') AS start
FROM {{ partition }}
WHERE changed_at < :current
ORDER BY start
