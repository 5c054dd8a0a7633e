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
/// writing and locked by this process.
pub(crate) fn create_locked(dir: &Path, prefix: &str, suffix: &str) -> io::Result<(PathBuf, File)> {
    crate::call::recording::create_private_dir_all(dir)?;
    let path = dir.join(format!(
        "{prefix}{}-{:016x}{suffix}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    file.try_lock().map_err(io::Error::from)?;
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
