-- GET /documents pages newest first.
CREATE INDEX documents_created_at_id ON documents (created_at, id);
