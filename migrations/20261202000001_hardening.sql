-- Hardening: a scan id is bound to the code and gate it was first used for (a reused id with
-- another code is a conflict, not the first scan's answer), and the lookups the tenant walls
-- and the retention of processed requests need.

-- SHA-256 of the scanned code; null for scans recorded before this column existed.
alter table checkin_scan add column code_sha256 bytea;

-- Pruning acknowledged results after their retention, oldest first.
create index processed_request_acknowledged_idx on processed_request (acknowledged_at)
    where acknowledged_at is not null;
-- Pruning results never acknowledged, after their (longer) retention.
create index processed_request_created_idx on processed_request (created_at)
    where acknowledged_at is null;
