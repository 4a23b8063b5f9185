//! The data directory: where generated secrets (and later the media cache and persistent
//! registrations) live. Secrets are created on first start with mode 0600, never overwritten,
//! and their paths (never their values) are logged.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rand::RngCore;

/// File name of the generated HTTP API key.
pub const API_KEY_FILE: &str = "api_key";

/// Creates `data_dir` (mode 0700) if it is missing.
pub fn ensure(data_dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .with_context(|| format!("creating data_dir {}", data_dir.display()))
}

/// Reads the secret stored in `data_dir/name`, creating it (32 random bytes, hex, mode 0600)
/// if it does not exist yet. Returns the secret and its path.
pub fn secret(data_dir: &Path, name: &str) -> anyhow::Result<(String, PathBuf)> {
    let path = data_dir.join(name);
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let fresh = hex::encode(bytes);
    // create_new: two processes starting at once cannot both write; the loser reads the winner's.
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            file.write_all(fresh.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated secret");
            Ok((fresh, path))
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let mode = fs::metadata(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                bail!(
                    "{} is readable by others (mode {:o}); chmod 600 it",
                    path.display(),
                    mode & 0o777
                );
            }
            let value = fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim()
                .to_owned();
            if value.is_empty() {
                bail!("{} is empty", path.display());
            }
            Ok((value, path))
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_generated_once_with_mode_0600_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested/data");
        ensure(&data).unwrap();
        let (first, path) = secret(&data, API_KEY_FILE).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(&data).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let (again, _) = secret(&data, API_KEY_FILE).unwrap();
        assert_eq!(first, again);
    }

    #[test]
    fn a_world_readable_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_, path) = secret(dir.path(), API_KEY_FILE).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = secret(dir.path(), API_KEY_FILE).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
