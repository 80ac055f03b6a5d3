//! Document bytes in the shared data directory.
//!
//! Layout: `<data>/documents/<id>` holds finished documents; `<data>/tmp/` holds uploads in
//! progress. An upload is written to `tmp/`, fsynced, then renamed into `documents/` (same
//! filesystem, so the rename is atomic): a reader on any replica sees the whole file or none.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
    documents: PathBuf,
    tmp: PathBuf,
}

impl Storage {
    /// The storage rooted at `root`, without touching the disk (see `prepare`).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            documents: root.join("documents"),
            tmp: root.join("tmp"),
        }
    }

    /// Create the subfolders if needed and write and remove a small file in each: an upload
    /// writes to `tmp/` and renames into `documents/`, so both must take a write. Readiness
    /// runs this on every probe, so a volume fixed by an operator makes the replica ready
    /// without a restart.
    fn prepare_blocking(&self) -> Result<(), DataDirError> {
        for dir in [&self.documents, &self.tmp] {
            std::fs::create_dir_all(dir).map_err(|e| DataDirError::new(&self.root, dir, e))?;
        }
        probe_blocking(&self.tmp).map_err(|e| DataDirError::new(&self.root, &self.tmp, e))?;
        // In documents/ a directory, not a file: creating it needs the same write permission,
        // and whoever lists the documents' files (an audit, a backup) never meets a probe.
        let probe = self
            .documents
            .join(format!(".probe-{}", Uuid::new_v4().simple()));
        std::fs::create_dir(&probe)
            .and_then(|()| std::fs::remove_dir(&probe))
            .map_err(|e| DataDirError::new(&self.root, &self.documents, e))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn document_path(&self, id: Uuid) -> PathBuf {
        self.documents.join(id.hyphenated().to_string())
    }

    /// Readiness: `prepare_blocking` off the async threads.
    pub async fn probe(&self) -> Result<(), String> {
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.prepare_blocking()).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(e) => Err(format!("data directory probe failed: {e}")),
        }
    }

    /// Remove files in `tmp/` not modified for `older_than`: uploads cut off by a SIGKILL or
    /// an OOM. A live upload on any replica is younger than the request deadline, so it is
    /// never touched. Returns how many were removed.
    pub async fn sweep_tmp(&self, older_than: std::time::Duration) -> io::Result<usize> {
        let tmp = self.tmp.clone();
        tokio::task::spawn_blocking(move || {
            let entries = match std::fs::read_dir(&tmp) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
                other => other?,
            };
            let mut removed = 0;
            for entry in entries {
                let entry = entry?;
                let metadata = entry.metadata()?;
                let age = metadata.modified()?.elapsed().unwrap_or_default();
                if metadata.is_file() && age > older_than {
                    match std::fs::remove_file(entry.path()) {
                        Ok(()) => removed += 1,
                        // Another replica swept it first.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(removed)
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Start writing a new document into `tmp/`.
    pub async fn begin_upload(&self) -> io::Result<Upload> {
        let path = self.tmp.join(format!("{}.part", Uuid::new_v4().simple()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(Upload {
            file,
            guard: TmpGuard(Some(path)),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Remove a document's bytes; a file that is already gone is not an error.
    pub async fn remove(&self, id: Uuid) -> io::Result<()> {
        match tokio::fs::remove_file(self.document_path(id)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn probe_blocking(dir: &Path) -> io::Result<()> {
    let path = dir.join(format!(".probe-{}", Uuid::new_v4().simple()));
    std::fs::write(&path, b"ok")?;
    std::fs::remove_file(&path)
}

/// An upload in progress. Dropping it (error, client gone) removes the temporary file.
pub struct Upload {
    file: tokio::fs::File,
    guard: TmpGuard,
    hasher: Sha256,
    size: u64,
}

pub struct Stored {
    pub size: u64,
    pub sha256: String,
}

impl Upload {
    pub fn size(&self) -> u64 {
        self.size
    }

    pub async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        self.file.write_all(chunk).await
    }

    /// Flush to disk and rename into `documents/<id>`.
    pub async fn commit(mut self, storage: &Storage, id: Uuid) -> io::Result<Stored> {
        self.file.flush().await?;
        self.file.sync_all().await?;
        let tmp = self.guard.0.take().expect("guard is armed until commit");
        let target = storage.document_path(id);
        if let Err(e) = tokio::fs::rename(&tmp, &target).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        // Make the rename itself durable; best effort on filesystems that refuse.
        let documents = storage.documents.clone();
        let _ =
            tokio::task::spawn_blocking(move || std::fs::File::open(documents)?.sync_all()).await;
        Ok(Stored {
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
        })
    }
}

struct TmpGuard(Option<PathBuf>);

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The data directory cannot be used: says which directory, who we are, who owns it, and the fix.
#[derive(Debug)]
pub struct DataDirError {
    pub dir: PathBuf,
    pub failed_at: PathBuf,
    pub source: io::Error,
    pub process: Option<(u32, u32)>,
    /// The nearest existing ancestor of `failed_at` (itself if it exists) and its uid/gid.
    pub owner: Option<(PathBuf, u32, u32)>,
}

impl DataDirError {
    fn new(root: &Path, failed_at: &Path, source: io::Error) -> Self {
        Self {
            dir: root.to_owned(),
            failed_at: failed_at.to_owned(),
            source,
            process: process_ids(),
            owner: nearest_owner(failed_at),
        }
    }
}

impl fmt::Display for DataDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "data directory {} is not writable ({}: {})",
            self.dir.display(),
            self.failed_at.display(),
            self.source
        )?;
        let who = self
            .process
            .map(|(uid, gid)| format!("uid {uid} gid {gid}"))
            .unwrap_or_else(|| "an unknown uid/gid".to_owned());
        write!(f, "; this process runs as {who}")?;
        if let Some((path, uid, gid)) = &self.owner {
            write!(f, ", {} is owned by uid {uid} gid {gid}", path.display())?;
        }
        let missing = !self.dir.exists();
        match self.process {
            Some((uid, gid)) if missing => write!(
                f,
                "; fix: mkdir -p {dir} && chown -R {uid}:{gid} {dir} (or mount a volume there)",
                dir = self.dir.display()
            ),
            Some((uid, gid)) => write!(
                f,
                "; fix: chown -R {uid}:{gid} {} (or run the api as the directory's owner)",
                self.dir.display()
            ),
            None => write!(
                f,
                "; fix: make {} writable by the api's user",
                self.dir.display()
            ),
        }
    }
}

impl std::error::Error for DataDirError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The effective uid and gid, from `/proc/self/status` (no libc needed).
pub fn process_ids() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let effective = |key: &str| -> Option<u32> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(2)?.parse().ok()
    };
    Some((effective("Uid:")?, effective("Gid:")?))
}

fn nearest_owner(path: &Path) -> Option<(PathBuf, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    path.ancestors().find_map(|p| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (p.to_owned(), m.uid(), m.gid()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_ids_come_from_proc() {
        let (uid, gid) = process_ids().expect("/proc/self/status is readable on Linux");
        use std::os::unix::fs::MetadataExt;
        let me = std::fs::metadata("/proc/self").unwrap();
        assert_eq!((uid, gid), (me.uid(), me.gid()));
    }

    #[test]
    fn data_dir_error_names_directory_ids_owner_and_fix() {
        let existing = std::env::temp_dir();
        let err = DataDirError {
            dir: existing.clone(),
            failed_at: existing.join("tmp"),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
            process: Some((10001, 10001)),
            owner: Some((existing.clone(), 0, 0)),
        };
        let line = err.to_string();
        let dir = existing.display();
        for part in [
            format!("data directory {dir} is not writable"),
            "this process runs as uid 10001 gid 10001".to_owned(),
            format!("{dir} is owned by uid 0 gid 0"),
            format!("fix: chown -R 10001:10001 {dir}"),
        ] {
            assert!(line.contains(&part), "{line:?} lacks {part:?}");
        }

        let missing = existing.join(format!("missing-{}", Uuid::new_v4().simple()));
        let err = DataDirError {
            dir: missing.clone(),
            failed_at: missing.join("documents"),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
            process: Some((10001, 10001)),
            owner: Some((existing, 0, 0)),
        };
        let line = err.to_string();
        let dir = missing.display();
        assert!(
            line.contains(&format!(
                "fix: mkdir -p {dir} && chown -R 10001:10001 {dir}"
            )),
            "{line}"
        );
    }
}
