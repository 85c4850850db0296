//! Files only their owner may read (the PAT, a config that may hold one), written
//! atomically: a temporary file created with mode 0600, synced, then renamed over the
//! target, so a reader never sees half a file and the mode is right from the first byte.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;

/// Writes `parts`, one after the other, to `path` (replacing it), readable only by the
/// current user. (Parts, so a secret and its newline need not be copied into one buffer.)
pub fn write(path: &Path, parts: &[&[u8]]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(|e| Error::io(&tmp, e))?;
    parts
        .iter()
        .try_for_each(|part| file.write_all(part))
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
