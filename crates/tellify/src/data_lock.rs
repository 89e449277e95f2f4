//! One server per data directory: `serve` holds an exclusive lock on `DATA/tellify.lock`
//! for as long as it runs, so a second server on the same directory, or an offline
//! command that must not run beside a server (`tellify admin reset-token`), is refused
//! with a message instead of working on a store someone else holds. The operating
//! system releases the lock when the process ends, `kill -9` included.

use std::fs::File;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "tellify.lock";

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct DataLock {
    _file: File,
    path: PathBuf,
}

impl DataLock {
    /// Takes the data directory's lock, or says who holds it. `purpose` completes
    /// "cannot ..." in the message (`start`, `reset a token`).
    pub fn acquire(directory: &Path, purpose: &str) -> anyhow::Result<DataLock> {
        let path = directory.join(LOCK_FILE);
        // Read-only is enough for flock, so a lock file another user (root running
        // `admin reset-token`, say) created never keeps the server's user out.
        let file = match File::open(&path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let created = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path);
                match created {
                    Ok(_) => File::open(&path),
                    Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                        File::open(&path)
                    }
                    Err(error) => Err(error),
                }
            }
            opened => opened,
        }
        .map_err(|error| {
            anyhow::anyhow!("cannot {purpose}: cannot open {} ({error})", path.display())
        })?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(DataLock { _file: file, path }),
            Err(rustix::io::Errno::WOULDBLOCK) => anyhow::bail!(
                "cannot {purpose}: a tellify server is running on the data directory {} (it holds {}); stop it first, or give this one another directory with --data or TELLIFY_DATA",
                directory.display(),
                path.display()
            ),
            Err(error) => anyhow::bail!(
                "cannot {purpose}: cannot lock {} ({error})",
                path.display()
            ),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_directory_is_refused_until_its_holder_lets_go() {
        let directory = tempfile::tempdir().unwrap();
        let held = DataLock::acquire(directory.path(), "start").unwrap();
        assert_eq!(held.path(), directory.path().join(LOCK_FILE));
        let refused = DataLock::acquire(directory.path(), "reset a token").unwrap_err();
        let message = refused.to_string();
        assert!(
            message.starts_with("cannot reset a token: a tellify server is running"),
            "{message}"
        );
        drop(held);
        DataLock::acquire(directory.path(), "start").unwrap();
    }

    #[test]
    fn a_lock_file_this_user_cannot_write_still_locks() {
        use std::os::unix::fs::PermissionsExt;
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join(LOCK_FILE);
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        let held = DataLock::acquire(directory.path(), "start").unwrap();
        assert!(DataLock::acquire(directory.path(), "start").is_err());
        drop(held);
    }
}
