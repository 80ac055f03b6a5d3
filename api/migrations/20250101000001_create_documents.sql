-- Document metadata; the bytes live in <data>/documents/<id>.
-- Portable across MySQL 8.4 and MariaDB 10.11: explicit charsets, no engine-specific collations.
CREATE TABLE documents (
    id           CHAR(36)     CHARACTER SET ascii NOT NULL,
    name         VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    size         BIGINT       NOT NULL,
    sha256       CHAR(64)     CHARACTER SET ascii NOT NULL,
    content_type VARCHAR(255) CHARACTER SET ascii NOT NULL,
    created_at   DATETIME(6)  NOT NULL,
    stored_by    VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB;
