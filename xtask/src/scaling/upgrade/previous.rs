//! Which previous version the upgrade scenario deploys from, and guards on the two builds.
//!
//! The default previous version is the parent of the commit that added the newest migration
//! file: that tree has neither the migration nor the code added with it. The git side is two
//! commands (`git log --diff-filter=A --format=%H -- api/migrations/<newest>`, then `<sha>^`);
//! what is pure lives here.

/// The newest migration of a directory listing: the highest `<version>_<name>.sql`.
pub fn newest_migration<'a>(file_names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    file_names
        .into_iter()
        .filter_map(|name| {
            let stem = name.strip_suffix(".sql")?;
            let version: i64 = stem.split_once('_')?.0.parse().ok()?;
            Some((version, name))
        })
        .max()
        .map(|(_, name)| name)
}

/// The versions the new build applies on the old one's database.
pub fn new_versions(old: &[i64], new: &[i64]) -> Vec<i64> {
    new.iter().filter(|v| !old.contains(v)).copied().collect()
}

/// Whether a binary embeds a migration: `sqlx::migrate!` stores each file's SQL verbatim.
///
/// Two source trees of this workspace built into one Cargo target directory share the api's
/// fingerprint (Cargo hashes a workspace member's path relative to the workspace root), so
/// after building one tree, building the other can print `Finished` without compiling and leave
/// the first tree's binary: seen with the breaking-migration copy. Checking the embedded
/// migrations catches that whatever the build did.
pub fn embeds(binary: &[u8], migration_sql: &str) -> bool {
    let needle = migration_sql.as_bytes();
    !needle.is_empty() && binary.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_migration_is_the_highest_version_whatever_the_listing_order() {
        let names = [
            "20250101000002_index_documents_created_at.sql",
            "20250101000003_create_document_labels.sql",
            "README.md",
            "20250101000001_create_documents.sql",
        ];
        assert_eq!(
            newest_migration(names),
            Some("20250101000003_create_document_labels.sql")
        );
        assert_eq!(newest_migration(["notes.txt"]), None);
    }

    #[test]
    fn new_versions_are_those_the_old_build_lacks() {
        assert_eq!(new_versions(&[1, 2], &[1, 2, 3, 4]), [3, 4]);
        assert!(new_versions(&[1, 2, 3], &[1, 2, 3]).is_empty());
    }

    #[test]
    fn a_binary_embeds_a_migration_when_its_sql_is_in_the_bytes() {
        let sql = "CREATE TABLE document_labels (\n    document_id CHAR(36)";
        let mut binary = b"\x7fELF....".to_vec();
        assert!(!embeds(&binary, sql));
        binary.extend_from_slice(sql.as_bytes());
        binary.extend_from_slice(b"\0more");
        assert!(embeds(&binary, sql));
        assert!(!embeds(&binary, ""));
    }
}
