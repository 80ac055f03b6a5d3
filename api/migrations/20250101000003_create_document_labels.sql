-- Labels on documents (`PUT /documents/{id}/labels`, `GET /labels/{label}/documents`).
--
-- An expand step that a rolling deploy survives: a new table, nothing renamed or dropped, so the
-- previous version's queries on `documents` run unchanged while it serves beside the new one
-- (api/tests/api/expand_contract.rs proves it). ON DELETE CASCADE keeps the previous version's
-- `DELETE FROM documents` working on a labelled document: it knows nothing of this table.
CREATE TABLE document_labels (
    document_id CHAR(36)    CHARACTER SET ascii NOT NULL,
    label       VARCHAR(64) CHARACTER SET ascii NOT NULL,
    PRIMARY KEY (document_id, label),
    KEY document_labels_label_document (label, document_id),
    CONSTRAINT document_labels_document FOREIGN KEY (document_id)
        REFERENCES documents (id) ON DELETE CASCADE
) ENGINE = InnoDB;
