-- Test-only: a migration slow enough to kill its runner part-way. No DDL, so the kill rolls
-- back sqlx's `success = 0` bookkeeping row together with it.
SELECT SLEEP(3);
