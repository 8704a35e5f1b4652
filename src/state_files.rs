//! Ferry's own state on disk (the data directory, generated keys): private to
//! the user running Ferry, and replaced whole or not at all, so a crash in the
//! middle of a write never leaves a file that stops the next start.

use std::io::Write;
use std::path::Path;

/// Creates `dir` (and its parents) and makes it private (0700 on Unix): it
/// holds keys, tokens and the control database.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Makes an existing file private (0600 on Unix).
pub fn make_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Writes `data` to `path` atomically: a private temporary file next to it,
/// flushed to disk, then renamed over `path` (and the directory synced).
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself must reach the disk too.
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_whole_private_and_without_leftovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        create_private_dir(&state).expect("dir");
        let file = state.join("streams.toml");
        write_atomic(&file, b"first").expect("write");
        write_atomic(&file, b"second, longer").expect("rewrite");
        assert_eq!(std::fs::read(&file).expect("read"), b"second, longer");
        let names: Vec<_> = std::fs::read_dir(&state)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("streams.toml")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode(&file), 0o600);
            assert_eq!(mode(&state), 0o700);
        }
    }
}
