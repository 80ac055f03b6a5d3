-- The breaking-migration fault: a contract step shipped in the same deploy as the code that
-- needs it. The previous version still selects and inserts `stored_by`.
ALTER TABLE documents RENAME COLUMN stored_by TO stored_by_host;
