//! The flight recorder of a call whose process died: the call's trace spool
//! ([`super::trace_spool`]) holds everything drained up to about a second before the crash,
//! and the call that crashed is the one whose trace is most worth reading. At the next start
//! (`call::recovery`, after the dead process's calls are closed) each spool whose call has
//! ended is put together as a trace marked `truncated`, stored like any trace and its files
//! removed; a spool whose call is still open belongs to another instance sharing the folder
//! and is left alone. A finished call's spool is removed only once its trace's row is
//! written, so a crash in between leaves a spool too: stored the same way, or only removed when
//! the call's trace was already stored.
//!
//! What a crash can leave half-written: each batch of slices is appended events first, then
//! decisions, then caller audio, so the last event or decision line may be torn and the audio
//! may stop short of what the events say. The trace keeps the longest consistent prefix: whole
//! event lines whose caller audio is all there, and the decisions made up to the last kept
//! event's time.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use switchboard_core::call::CallSettings;
use switchboard_core::call::trace::{
    Decision, SpooledSlices, TRACE_FORMAT_VERSION, Trace, TraceEvent, TracedEvent,
};

use super::trace_spool::{SpoolError, TRACE_DIR, io_at, remove_files, spool_paths};

/// What a trace starts with, written once as the spool's `.head` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpoolHead {
    /// The organisation of the call (the trace is stored under it).
    pub org_id: i64,
    /// The settings the call's core ran with.
    pub settings: CallSettings,
}

impl SpoolHead {
    /// The head file's bytes (JSON); empty if the settings cannot be encoded, which
    /// [`read_head`] then refuses (the spool is only removed, never stored).
    pub fn encode(org_id: i64, settings: &CallSettings) -> Vec<u8> {
        let head = SpoolHead {
            org_id,
            settings: settings.clone(),
        };
        serde_json::to_vec(&head).unwrap_or_default()
    }
}

/// The ids of the calls whose spool (its head file) is in `base_dir`'s trace folder.
pub fn find_leftover(base_dir: &Path) -> Vec<i64> {
    let Ok(entries) = std::fs::read_dir(base_dir.join(TRACE_DIR)) else {
        return Vec::new();
    };
    let mut ids: Vec<i64> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let id = name
                .to_str()?
                .strip_prefix("call-")?
                .strip_suffix(".head")?;
            id.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// The head of call `call_id`'s spool.
pub fn read_head(base_dir: &Path, call_id: i64) -> Result<SpoolHead, SpoolError> {
    let path = head_path(base_dir, call_id);
    let bytes = std::fs::read(&path).map_err(io_at(&path))?;
    serde_json::from_slice(&bytes).map_err(|e| SpoolError::Encode(format!("{path:?}: {e}")))
}

/// Call `call_id`'s spool put together as a truncated trace, encoded ([`Trace::to_bytes`]).
pub fn encode_leftover(
    base_dir: &Path,
    call_id: i64,
    head: SpoolHead,
) -> Result<Vec<u8>, SpoolError> {
    let [events, decisions, audio, _] = spool_paths(&base_dir.join(TRACE_DIR), call_id);
    let read = |p: &PathBuf| match std::fs::read(p) {
        Ok(bytes) => Ok(bytes),
        // A crash between the head and the first append.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_at(p)(e)),
    };
    let (events, decisions, audio) = (read(&events)?, read(&decisions)?, read(&audio)?);
    let kept = consistent_prefix(&events, &decisions, audio.len());
    let rest = Trace {
        version: TRACE_FORMAT_VERSION,
        settings: head.settings,
        events: Vec::new(),
        decisions: Vec::new(),
        trailing_frames: 0,
        truncated: true,
        caller_audio: Vec::new(),
    };
    rest.to_bytes_after(SpooledSlices {
        events: &events[..kept.events],
        decisions: &decisions[..kept.decisions],
        caller_audio: &audio[..kept.audio],
    })
    .map_err(|e| SpoolError::Encode(e.to_string()))
}

/// Removes call `call_id`'s spool files.
pub fn remove(base_dir: &Path, call_id: i64) {
    remove_files(&spool_paths(&base_dir.join(TRACE_DIR), call_id));
}

fn head_path(base_dir: &Path, call_id: i64) -> PathBuf {
    let [.., head] = spool_paths(&base_dir.join(TRACE_DIR), call_id);
    head
}

/// How many bytes of each spool file a recovered trace keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kept {
    events: usize,
    decisions: usize,
    audio: usize,
}

/// The longest consistent prefix of a spool (see the module doc): whole event lines that parse
/// and whose caller audio fits in `audio_len` bytes, the decision lines up to the last kept
/// event's time, and the audio those events take.
fn consistent_prefix(events: &[u8], decisions: &[u8], audio_len: usize) -> Kept {
    let mut kept = Kept {
        events: 0,
        decisions: 0,
        audio: 0,
    };
    let mut last_at = None;
    for line in whole_lines(events) {
        let Ok(event) = serde_json::from_slice::<TracedEvent>(line) else {
            break;
        };
        let bytes = match event.event {
            TraceEvent::CallerAudio { bytes } => bytes as usize,
            _ => 0,
        };
        if kept.audio + bytes > audio_len {
            break;
        }
        kept.audio += bytes;
        kept.events += line.len() + 1;
        last_at = Some(event.at_ms);
    }
    let Some(last_at) = last_at else {
        return kept;
    };
    for line in whole_lines(decisions) {
        match serde_json::from_slice::<Decision>(line) {
            Ok(d) if d.at_ms <= last_at => kept.decisions += line.len() + 1,
            _ => break,
        }
    }
    kept
}

/// The `\n`-terminated lines of `bytes`, without their `\n`; a torn last line is left out.
fn whole_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    bytes[..end]
        .split(|b| *b == b'\n')
        .take_while(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::call::trace::TraceSlice;

    fn slice(start_ms: u64, audio: u8) -> TraceSlice {
        TraceSlice {
            events: vec![
                TracedEvent {
                    at_ms: start_ms,
                    event: TraceEvent::SttSpeechStarted,
                },
                TracedEvent {
                    at_ms: start_ms + 20,
                    event: TraceEvent::CallerAudio { bytes: 160 },
                },
            ],
            decisions: vec![Decision {
                at_ms: start_ms + 20,
                frames_before: 1,
                action: "SendMark { name: \"m\" }".into(),
            }],
            caller_audio: vec![audio; 160],
        }
    }

    /// Writes `slices` as the spool does, for call 5 of organisation 3.
    fn spool(base: &Path, slices: &[TraceSlice]) -> CallSettings {
        let dir = base.join(TRACE_DIR);
        std::fs::create_dir_all(&dir).expect("dir");
        let settings = CallSettings {
            lead_ms: 240,
            ..CallSettings::default()
        };
        let [events, decisions, audio, head] = spool_paths(&dir, 5);
        std::fs::write(head, SpoolHead::encode(3, &settings)).expect("head");
        let (mut e, mut d, mut a) = (Vec::new(), Vec::new(), Vec::new());
        for s in slices {
            s.write_json_lines(&mut e, &mut d).expect("lines");
            a.extend_from_slice(&s.caller_audio);
        }
        std::fs::write(events, e).expect("events");
        std::fs::write(decisions, d).expect("decisions");
        std::fs::write(audio, a).expect("audio");
        settings
    }

    fn append(path: &Path, bytes: &[u8]) {
        use std::io::Write as _;
        let mut f = std::fs::File::options()
            .append(true)
            .open(path)
            .expect("open");
        f.write_all(bytes).expect("append");
    }

    #[test]
    fn a_whole_spool_becomes_the_trace_it_held_marked_truncated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (slice(0, 1), slice(40, 2));
        let settings = spool(dir.path(), &[a.clone(), b.clone()]);
        assert_eq!(find_leftover(dir.path()), [5]);
        let head = read_head(dir.path(), 5).expect("head");
        assert_eq!(head.org_id, 3);
        let trace = Trace::from_bytes(&encode_leftover(dir.path(), 5, head).expect("encode"))
            .expect("decode");
        assert_eq!(trace.settings, settings);
        assert!(trace.truncated);
        assert_eq!(trace.events, [a.events, b.events].concat());
        assert_eq!(trace.decisions, [a.decisions, b.decisions].concat());
        assert_eq!(
            trace.caller_audio,
            [a.caller_audio, b.caller_audio].concat()
        );
        remove(dir.path(), 5);
        assert!(find_leftover(dir.path()).is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join(TRACE_DIR))
                .expect("dir")
                .count(),
            0
        );
    }

    #[test]
    fn a_torn_append_is_cut_back_to_what_is_consistent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = slice(0, 1);
        spool(dir.path(), std::slice::from_ref(&a));
        let [events, decisions, _, _] = spool_paths(&dir.path().join(TRACE_DIR), 5);
        // The next batch's events and a torn decision made it to disk; its audio did not.
        let (mut e, mut d) = (Vec::new(), Vec::new());
        slice(40, 2)
            .write_json_lines(&mut e, &mut d)
            .expect("lines");
        append(&events, &e);
        append(&events, b"{\"t\":80,\"e\":");
        append(&decisions, &d[..d.len() / 2]);

        let head = read_head(dir.path(), 5).expect("head");
        let trace = Trace::from_bytes(&encode_leftover(dir.path(), 5, head).expect("encode"))
            .expect("a consistent trace");
        // The second batch's speech start (no audio) stays; its audio event does not.
        let mut expected = a.events.clone();
        expected.push(slice(40, 2).events[0].clone());
        assert_eq!(trace.events, expected);
        assert_eq!(trace.decisions, a.decisions);
        assert_eq!(trace.caller_audio, a.caller_audio);
    }

    #[test]
    fn a_spool_without_appends_or_head_is_handled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let traces = dir.path().join(TRACE_DIR);
        std::fs::create_dir_all(&traces).expect("dir");
        let [.., head] = spool_paths(&traces, 8);
        std::fs::write(head, SpoolHead::encode(1, &CallSettings::default())).expect("head");
        let trace = Trace::from_bytes(
            &encode_leftover(dir.path(), 8, read_head(dir.path(), 8).expect("head"))
                .expect("encode"),
        )
        .expect("decode");
        assert!(trace.events.is_empty() && trace.caller_audio.is_empty());
        assert!(
            read_head(dir.path(), 9).is_err(),
            "no head, nothing to read"
        );
    }
}
