//! The prompt cache on disk: one `<id>.ulaw` file per entry and an `index.json`, both written
//! atomically (a temporary file in the same directory, fsync, rename, fsync of the directory),
//! so a reader sees either the old file or the new one, never a partial one. A reader that
//! holds an open file keeps reading the old inode after a refresh or an eviction replaces or
//! unlinks the name.
//!
//! All functions here are blocking; the cache calls them from `spawn_blocking` (or under its
//! state lock for the single syscalls that must be atomic with the index).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::freshness::Directives;

/// The index file's name inside the cache directory.
const INDEX_FILE: &str = "index.json";
/// The prefix of temporary files; only files with this prefix or with an id-shaped `.ulaw`
/// name are ever removed from the directory.
const TEMP_PREFIX: &str = ".tmp-";
/// The extension of entry files.
const ENTRY_EXTENSION: &str = "ulaw";
/// The index format; a different version is discarded (the files are then strays).
const INDEX_VERSION: u32 = 1;

/// The origin's header values that freshness and revalidation depend on, as received (a 304
/// replaces those it carries, RFC 9111 §4.3.4).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct OriginHeaders {
    pub cache_control: Option<String>,
    pub expires: Option<String>,
    pub last_modified: Option<String>,
    pub etag: Option<String>,
}

/// One stored entry, as kept in memory and in the index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The normalised URL the entry was fetched from (empty for synthesized speech).
    pub url: String,
    /// Synthesized speech: deterministic, so it never expires (but is evicted like any entry).
    /// Absent in indexes written before speech existed.
    #[serde(default)]
    pub synthesized: bool,
    /// Size of `<id>.ulaw` in bytes.
    pub size: u64,
    /// Playing time of the processed audio.
    pub duration: Duration,
    /// Our strong ETag over the processed bytes, quoted.
    pub etag: String,
    /// The origin's validators and expiry headers.
    pub origin: OriginHeaders,
    /// When the response (or the last 304) was received (RFC 9111 §4.2.3 `response_time`).
    pub response_time: SystemTime,
    /// RFC 9111 §4.2.3 `corrected_initial_age` at `response_time`.
    pub initial_age: Duration,
    /// Freshness lifetime (RFC 9111 §4.2.1).
    pub lifetime: Duration,
    /// The response's `Cache-Control` directives (no-cache, must-revalidate, stale-if-error).
    pub directives: Directives,
    /// Recency for LRU eviction: a counter, larger is more recent.
    pub last_use: u64,
}

#[derive(Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    entries: HashMap<String, Record>,
}

/// Paths and temporary-file naming for one cache directory.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    temp_counter: AtomicU64,
}

impl Store {
    pub fn new(dir: PathBuf) -> Store {
        Store {
            dir,
            temp_counter: AtomicU64::new(0),
        }
    }

    pub fn entry_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.{ENTRY_EXTENSION}"))
    }

    /// Creates the directory, loads the index, drops entries whose file is missing or has the
    /// wrong size, and removes stray entry files and leftover temporary files. Returns the
    /// surviving entries and whether the index needs rewriting.
    pub fn load(&self) -> io::Result<(HashMap<String, Record>, bool)> {
        fs::create_dir_all(&self.dir)?;
        let mut changed = false;
        let mut entries = match fs::read(self.dir.join(INDEX_FILE)) {
            Ok(bytes) => match serde_json::from_slice::<IndexFile>(&bytes) {
                Ok(index) if index.version == INDEX_VERSION => index.entries,
                _ => {
                    tracing::warn!(dir = %self.dir.display(), "media cache index unreadable; starting empty");
                    changed = true;
                    HashMap::new()
                }
            },
            Err(error) if error.kind() == io::ErrorKind::NotFound => HashMap::new(),
            Err(error) => return Err(error),
        };
        entries.retain(|id, record| {
            let keep = is_id(id)
                && fs::metadata(self.entry_path(id))
                    .is_ok_and(|metadata| metadata.len() == record.size);
            changed |= !keep;
            keep
        });
        for item in fs::read_dir(&self.dir)? {
            let item = item?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            let stray_entry = name
                .strip_suffix(".ulaw")
                .is_some_and(|id| is_id(id) && !entries.contains_key(id));
            if stray_entry || name.starts_with(TEMP_PREFIX) {
                fs::remove_file(item.path())?;
            }
        }
        Ok((entries, changed))
    }

    /// Writes `bytes` to a new temporary file in the cache directory and flushes it to disk.
    pub fn write_temporary(&self, bytes: &[u8]) -> io::Result<TemporaryFile> {
        let serial = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let path = self
            .dir
            .join(format!("{TEMP_PREFIX}{}-{serial}", std::process::id()));
        let temporary = TemporaryFile { path };
        let mut file = File::create(&temporary.path)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        Ok(temporary)
    }

    /// Atomically moves a temporary file to the name of entry `id`.
    pub fn install(&self, temporary: TemporaryFile, id: &str) -> io::Result<()> {
        fs::rename(&temporary.path, self.entry_path(id))?;
        // The rename succeeded: there is nothing left to clean up.
        std::mem::forget(temporary);
        Ok(())
    }

    /// Removes entry `id`'s file; a missing file is not an error.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        match fs::remove_file(self.entry_path(id)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// Atomically replaces the index with `entries`.
    pub fn write_index(&self, entries: HashMap<String, Record>) -> io::Result<()> {
        let index = IndexFile {
            version: INDEX_VERSION,
            entries,
        };
        let bytes = serde_json::to_vec(&index).map_err(io::Error::other)?;
        let temporary = self.write_temporary(&bytes)?;
        fs::rename(&temporary.path, self.dir.join(INDEX_FILE))?;
        std::mem::forget(temporary);
        self.sync_directory()
    }

    /// Makes the renames durable (POSIX: a rename is recorded in the directory).
    pub fn sync_directory(&self) -> io::Result<()> {
        #[cfg(unix)]
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

/// A temporary file that is removed if it is dropped before being installed.
#[derive(Debug)]
pub(crate) struct TemporaryFile {
    path: PathBuf,
}

impl Drop for TemporaryFile {
    fn drop(&mut self) {
        // Best effort: a leftover is removed at the next start anyway.
        let _ = fs::remove_file(&self.path);
    }
}

/// Whether `text` has the shape of an entry id: 32 lowercase hex digits.
pub(crate) fn is_id(text: &str) -> bool {
    text.len() == 32
        && text
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}
