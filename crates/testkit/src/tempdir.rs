//! A scratch directory removed on drop, kept (and its path printed) when the test is panicking.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A scratch directory under the system temp dir (`$TMPDIR/bosun-testkit/…`).
///
/// Removed on drop, unless the thread is panicking (a failing test) or `BOSUN_KEEP_TMP` is set: then it is
/// kept and its path printed, so the logs and config inside can be read.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a new, empty directory whose name starts with `prefix`.
    pub fn new(prefix: &str) -> Result<TempDir> {
        let base = std::env::temp_dir().join("bosun-testkit");
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = base.join(format!("{prefix}-{}-{n}-{nanos:x}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(TempDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, contents: &[u8]) -> Result<PathBuf> {
        let path = self.path.join(name);
        std::fs::write(&path, contents)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("BOSUN_KEEP_TMP").is_some() {
            eprintln!("testkit: kept {}", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
