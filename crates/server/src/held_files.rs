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
use std::time::Duration;

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

/// A hidden file of a creation still under way is this old at most (it is renamed
/// microseconds after it is made); an older one no one holds was left by a process that died
/// between [`create_locked`]'s create and its rename.
const ABANDONED_AFTER: Duration = Duration::from_secs(60);

/// The files in `dir` named `<prefix>…<suffix>` (none when it does not exist), sorted by name,
/// for a look for files to take over. Hidden files of creations that died half way (see
/// [`ABANDONED_AFTER`]) are removed on the way: they never held anything answered for.
pub(crate) fn leftovers(dir: &Path, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let hidden_suffix = format!("{suffix}.new");
    let mut paths = Vec::new();
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with(prefix) && name.ends_with(suffix) {
            paths.push(path);
        } else if name
            .strip_prefix('.')
            .is_some_and(|n| n.starts_with(prefix) && n.ends_with(&hidden_suffix))
        {
            remove_if_abandoned(&path);
        }
    }
    paths.sort();
    paths
}

/// Removes a hidden half-created file once it is older than [`ABANDONED_AFTER`] and no one
/// holds it.
fn remove_if_abandoned(path: &Path) {
    let old = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|at| at.elapsed().is_ok_and(|age| age > ABANDONED_AFTER));
    if old && matches!(take_over(path), Ok(Some(_))) {
        match std::fs::remove_file(path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a file a stopped process left half created")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a half-created file")
            }
        }
    }
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
            leftovers(dir.path(), "held-", ".json"),
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

    /// A hidden file a creation left half way goes once it is old and free; a fresh one (a
    /// creation under way) and an old one still held stay.
    #[test]
    fn a_half_created_file_goes_once_old_and_free() {
        let dir = tempfile::tempdir().expect("tempdir");
        let make = |name: &str, age_s: u64| {
            let path = dir.path().join(name);
            let file = File::create(&path).expect("created");
            let at = std::time::SystemTime::now() - Duration::from_secs(age_s);
            file.set_modified(at).expect("aged");
            (path, file)
        };
        let (old_free, _) = make(".held-1-a.json.new", 120);
        let (fresh, _) = make(".held-1-b.json.new", 0);
        let (old_held, held) = make(".held-1-c.json.new", 120);
        held.try_lock().expect("held");
        let (other, _) = make(".other-1-d.json.new", 120);
        let (named_file, _) = make("held-1-e.json", 120);
        assert_eq!(
            leftovers(dir.path(), "held-", ".json"),
            vec![named_file.clone()]
        );
        assert!(
            !old_free.exists(),
            "an old half-created file no one holds goes"
        );
        assert!(fresh.exists(), "a creation under way stays");
        assert!(old_held.exists(), "a held file stays");
        assert!(other.exists(), "another kind's file is not ours to remove");
        assert!(
            named_file.exists(),
            "a named file is taken over, not removed"
        );
        drop(held);
    }
}
