//! Files a process holds while it works through them, and takes over when their holder
//! stopped: the call-data writer's spill files and the status callbacks waiting for the
//! database (`call::call_data_spill`, `twilio::status_spool`).
//!
//! A live file is locked (`flock`, exclusive) by the process that holds it; the kernel drops
//! the lock when that process dies, so a file nobody holds was left by a stopped process, and
//! the first process to lock it takes it over. Names are `<prefix><pid>-<random><suffix>` in a
//! folder created 0700, the files 0600.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Creates a new file in `dir` (created 0700 if missing; the file 0600), open for reading and
/// writing and locked by this process. It is locked under a name no one looks for and only
/// then given its own, so a sibling looking for files to take over never locks it first.
pub(crate) fn create_locked(dir: &Path, prefix: &str, suffix: &str) -> io::Result<(PathBuf, File)> {
    crate::call::recording::create_private_dir_all(dir)?;
    let name = format!(
        "{prefix}{}-{:016x}{suffix}",
        std::process::id(),
        rand::random::<u64>()
    );
    let (hidden, path) = (dir.join(format!(".{name}.new")), dir.join(name));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&hidden)?;
    let named = file
        .try_lock()
        .map_err(io::Error::from)
        .and_then(|()| std::fs::rename(&hidden, &path));
    if let Err(e) = named {
        let _ = std::fs::remove_file(&hidden);
        return Err(e);
    }
    Ok((path, file))
}

/// The files in `dir` named `<prefix>…<suffix>` (none when it does not exist), sorted by name.
pub(crate) fn named(dir: &Path, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
        })
        .collect();
    paths.sort();
    paths
}

/// Opens and locks a file its holder left. `None` when a live process holds it, or it went
/// meanwhile (taken over and finished by a sibling between our open and our lock).
pub(crate) fn take_over(path: &Path) -> io::Result<Option<File>> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    let same = std::fs::metadata(path).is_ok_and(|at_path| {
        file.metadata()
            .is_ok_and(|ours| ours.ino() == at_path.ino())
    });
    Ok(same.then_some(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file appears under its own name only once locked, keeps its lock across the
    /// renaming, and nothing else is left in the folder.
    #[test]
    fn a_created_file_is_locked_under_its_own_name_and_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, held) = create_locked(dir.path(), "held-", ".json").expect("created");
        assert_eq!(
            named(dir.path(), "held-", ".json"),
            std::slice::from_ref(&path)
        );
        let all: Vec<_> = std::fs::read_dir(dir.path())
            .expect("folder")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(
            all,
            std::slice::from_ref(&path),
            "no hidden name left behind"
        );
        assert!(take_over(&path).expect("opened").is_none(), "still locked");
        drop(held);
        assert!(take_over(&path).expect("opened").is_some(), "released");
    }
}
