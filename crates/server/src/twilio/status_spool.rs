//! Status callbacks waiting for the database, kept on disk.
//!
//! Why: a callback accepted during an outage (`status_deferred`) is answered 204, and Twilio
//! never sends it again; held in memory only, it was lost when the process stopped before the
//! database came back (a rolling restart past its drain limit, a crash). Each one is now also
//! a small file in the spill folder (`database.call_data_spill_dir`, beside the call-data
//! writer's files): the request as Twilio signed it (path and query, `X-Twilio-Signature`, the
//! form body) and nothing derived from it. The task waiting for the database holds the file
//! open and locked (`flock`) and removes it once the callback is applied or dropped; a file
//! nobody holds was left by a process that stopped (or by a wait that gave up), and the next
//! instance to look (at its start and every `twilio.callbacks_refresh_s`) adopts it and checks
//! and applies it the same way. The file carries no secret (a signature, not a token). It is
//! flushed to the disk, with its folder's entry, before the callback is answered: unlike the
//! call-data spill's rows, which follow each other many a second, these are rare and Twilio
//! never sends one again.

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::held_files;

/// File names: `status-callback-<pid>-<random>.json`, apart from the call-data spill's.
const PREFIX: &str = "status-callback-";
const SUFFIX: &str = ".json";

/// A status callback as Twilio sent it: all that checking its signature and applying it
/// needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SavedCallback {
    /// The request's path and query, as the signature covers them.
    pub uri: String,
    /// `X-Twilio-Signature`.
    pub signature: String,
    /// The form body, as received.
    pub body: String,
}

/// A saved callback's file, open and locked by this process until [`HeldFile::done`] removes
/// it; dropped without `done` (the task cancelled at shutdown, or its wait given up), it stays
/// for the next instance to look.
#[derive(Debug)]
pub(super) struct HeldFile {
    path: PathBuf,
    _file: File,
}

impl HeldFile {
    /// Writes `saved` to a new file in `dir` (created 0700 if missing; the file 0600), locked
    /// and flushed to the disk with its name.
    pub(super) fn save(dir: &Path, saved: &SavedCallback) -> io::Result<HeldFile> {
        let (path, mut file) = held_files::create_locked(dir, PREFIX, SUFFIX)?;
        let written = serde_json::to_vec(saved)
            .map_err(io::Error::other)
            .and_then(|json| file.write_all(&json))
            .and_then(|()| file.sync_all())
            .and_then(|()| File::open(dir)?.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(HeldFile { path, _file: file })
    }

    /// The callback was applied or dropped: its file goes.
    pub(super) fn done(self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "a done status callback's file stays");
        }
    }

    /// Saved callbacks' files in `dir` (none when it does not exist); half-created ones a
    /// stopped process left go on the way.
    pub(super) fn leftovers(dir: &Path) -> Vec<PathBuf> {
        held_files::leftovers(dir, PREFIX, SUFFIX)
    }

    /// Opens and locks a file no one holds, with the callback it holds. `None` when a live
    /// holder has it, or it went meanwhile (adopted and finished by a sibling).
    pub(super) fn adopt(path: &Path) -> io::Result<Option<(HeldFile, SavedCallback)>> {
        let Some(mut file) = held_files::take_over(path)? else {
            return Ok(None);
        };
        let mut json = Vec::new();
        file.read_to_end(&mut json)?;
        let held = HeldFile {
            path: path.to_owned(),
            _file: file,
        };
        match serde_json::from_slice(&json) {
            Ok(saved) => Ok(Some((held, saved))),
            Err(e) => {
                // Torn by a crash while it was written: the callback was never answered 204.
                held.done();
                Err(io::Error::new(io::ErrorKind::InvalidData, e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved() -> SavedCallback {
        SavedCallback {
            uri: "/twilio/status?x=1".into(),
            signature: "c2lnbmF0dXJl".into(),
            body: "CallSid=CA1&CallStatus=completed".into(),
        }
    }

    #[test]
    fn a_saved_callback_is_adopted_only_once_its_holder_let_go_and_goes_when_done() {
        let dir = tempfile::tempdir().expect("dir");
        let held = HeldFile::save(dir.path(), &saved()).expect("saved");
        let left = HeldFile::leftovers(dir.path());
        assert_eq!(left.len(), 1);
        assert!(
            HeldFile::adopt(&left[0]).expect("read").is_none(),
            "a live holder keeps it"
        );
        drop(held);
        let (adopted, back) = HeldFile::adopt(&left[0])
            .expect("read")
            .expect("nobody holds it");
        assert_eq!(back, saved());
        adopted.done();
        assert!(HeldFile::leftovers(dir.path()).is_empty());
    }

    #[test]
    fn only_saved_callbacks_are_leftovers_and_a_torn_one_is_given_up() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("call-data-1-0.spill"), b"x").expect("other");
        let torn = dir.path().join(format!("{PREFIX}1-0{SUFFIX}"));
        std::fs::write(&torn, br#"{"uri":"/twilio/st"#).expect("torn");
        assert_eq!(HeldFile::leftovers(dir.path()), std::slice::from_ref(&torn));
        assert!(HeldFile::adopt(&torn).is_err());
        assert!(!torn.exists(), "a torn file is removed");
    }
}
