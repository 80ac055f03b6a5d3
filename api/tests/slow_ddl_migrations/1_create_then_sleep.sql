-- Test-only: DDL first (MySQL commits it, and sqlx's `success = 0` row with it, at once), then
-- a pause long enough to stop the runner part-way. Cut here, the schema is left dirty.
CREATE TABLE slow_ddl (id INT NOT NULL PRIMARY KEY);
SELECT SLEEP(3);
