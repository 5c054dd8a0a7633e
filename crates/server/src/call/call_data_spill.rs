//! The call-data writer's file on disk, where the rows it holds go while the database is away.
//!
//! Why a file: held in memory alone, an outage longer than the memory limit dropped rows, and a
//! crash (kill -9, OOM, a deploy that did not wait) during an outage lost every row held. While
//! the database is away the writer appends each row it takes to its own spill file and keeps only
//! a window of them in memory, read back from the file as the window empties.
//!
//! Format: a header line holding the *committed* offset (16 hex digits and `\n`: every row that
//! ends at or before it is stored), then one JSON [`CallDataRow`] per line. The header is
//! rewritten in place after each stored batch, so a process that adopts the file after a crash
//! starts at the first row not yet stored; a crash between a batch's commit and the header's
//! rewrite stores that batch (at most [`super::call_data`]'s batch size) a second time.
//!
//! Each live file is locked (`flock`, exclusive) by the process that writes it; the kernel drops
//! the lock when that process dies. At start a writer adopts every unlocked spill file in the
//! folder (its own previous process's, or a dead sibling's when instances share the folder) and
//! stores its rows. Rows are written with plain `write` calls (the page cache): they survive the
//! process's crash, not the machine's power loss.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use switchboard_store::CallDataRow;

use crate::held_files;

/// Length of the header line: 16 hex digits and a newline.
pub const HEADER_LEN: u64 = 17;
/// Bytes read from the file at a time when refilling the writer's window.
const READ_CHUNK: usize = 256 * 1024;
const PREFIX: &str = "call-data-";
const SUFFIX: &str = ".spill";

/// What reading the next line of a spill file gave.
#[derive(Debug)]
pub enum SpillLine {
    /// A row, and the offset just after its line (commit up to it once the row is stored).
    Row(Box<CallDataRow>, u64),
    /// A line that is not a row (a torn write at a crash, or damage): given up; commit up to the
    /// offset after it.
    Unreadable(u64),
}

/// One spill file, open for reading and appending, locked by this process.
#[derive(Debug)]
pub struct SpillFile {
    path: PathBuf,
    file: File,
    /// End of the last whole line written.
    end: u64,
    /// Start of the first line not yet read back.
    read_at: u64,
}

impl SpillFile {
    /// Creates a new spill file in `dir` (created 0700 if missing; the file 0600), locked.
    pub fn create(dir: &Path) -> io::Result<SpillFile> {
        let (path, file) = held_files::create_locked(dir, PREFIX, SUFFIX)?;
        let spill = SpillFile {
            path,
            file,
            end: HEADER_LEN,
            read_at: HEADER_LEN,
        };
        spill.commit(HEADER_LEN)?;
        Ok(spill)
    }

    /// Spill files in `dir` (none when it does not exist); half-created ones a stopped process
    /// left go on the way.
    pub fn leftovers(dir: &Path) -> Vec<PathBuf> {
        held_files::leftovers(dir, PREFIX, SUFFIX)
    }

    /// Opens and locks a spill file another process left, positioned at its first row not yet
    /// stored. `None` when a live process holds it, or it went meanwhile (adopted and finished
    /// by a sibling).
    pub fn adopt(path: &Path) -> io::Result<Option<SpillFile>> {
        let Some(file) = held_files::take_over(path)? else {
            return Ok(None);
        };
        let len = file.metadata()?.len();
        let mut header = [0u8; HEADER_LEN as usize];
        let committed = match file.read_exact_at(&mut header, 0) {
            Ok(()) => std::str::from_utf8(&header[..16])
                .ok()
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                .filter(|at| (HEADER_LEN..=len).contains(at))
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "not a call-data spill header")
                })?,
            // Torn before its header was whole: nothing was appended yet.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => HEADER_LEN.max(len),
            Err(e) => return Err(e),
        };
        Ok(Some(SpillFile {
            path: path.to_owned(),
            file,
            end: len.max(HEADER_LEN),
            read_at: committed,
        }))
    }

    /// Appends `lines` (whole JSON lines, each ending in `\n`).
    pub fn append(&mut self, lines: &[u8]) -> io::Result<()> {
        self.file.write_all_at(lines, self.end)?;
        self.end += lines.len() as u64;
        Ok(())
    }

    /// Reads up to `max_lines` lines not yet read. A last line without its newline (the write a
    /// crash tore) is [`SpillLine::Unreadable`] and ends the file.
    pub fn read(&mut self, max_lines: usize) -> io::Result<Vec<SpillLine>> {
        let mut lines = Vec::new();
        let mut chunk = READ_CHUNK;
        while lines.len() < max_lines && self.read_at < self.end {
            let len = (self.end - self.read_at).min(chunk as u64) as usize;
            let mut buf = vec![0u8; len];
            self.file.read_exact_at(&mut buf, self.read_at)?;
            let whole = buf.iter().rposition(|&b| b == b'\n').map(|i| i + 1);
            let reaches_end = self.read_at + len as u64 == self.end;
            let Some(whole) = whole else {
                if reaches_end {
                    // A torn last line: nothing after it was ever written.
                    self.read_at = self.end;
                    lines.push(SpillLine::Unreadable(self.end));
                    break;
                }
                chunk *= 2; // one line longer than the chunk
                continue;
            };
            for line in buf[..whole].split_inclusive(|&b| b == b'\n') {
                if lines.len() == max_lines {
                    break;
                }
                self.read_at += line.len() as u64;
                lines.push(match serde_json::from_slice::<CallDataRow>(line) {
                    Ok(row) => SpillLine::Row(Box::new(row), self.read_at),
                    Err(_) => SpillLine::Unreadable(self.read_at),
                });
            }
        }
        Ok(lines)
    }

    /// Records that every line ending at or before `offset` is stored.
    pub fn commit(&self, offset: u64) -> io::Result<()> {
        let header = format!("{offset:016x}\n");
        self.file.write_all_at(header.as_bytes(), 0)
    }

    /// Lines appended and not yet read back.
    pub fn unread(&self) -> bool {
        self.read_at < self.end
    }

    /// Bytes the file holds.
    pub fn bytes(&self) -> u64 {
        self.end
    }

    /// Counts every line appended as read back (its rows are already in the reader's hands).
    pub fn mark_read(&mut self) {
        self.read_at = self.end;
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file (its rows are all stored); the lock goes with it.
    pub fn remove(self) -> io::Result<()> {
        std::fs::remove_file(&self.path)
    }
}

/// `row` as one spill line, appended to `out`.
pub fn encode(row: &CallDataRow, out: &mut Vec<u8>) {
    // A row is plain data (strings, numbers, JSON values): serialising it cannot fail.
    if serde_json::to_writer(&mut *out, row).is_ok() {
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_store::{CallData, NewTranscript};

    fn row(text: &str) -> CallDataRow {
        CallDataRow {
            org_id: 1,
            call_id: 2,
            data: CallData::Transcript(Box::new(NewTranscript {
                role: "user".into(),
                content: text.into(),
                ..NewTranscript::default()
            })),
        }
    }

    fn texts(lines: &[SpillLine]) -> Vec<String> {
        lines
            .iter()
            .map(|l| match l {
                SpillLine::Row(r, _) => match &r.data {
                    CallData::Transcript(t) => t.content.clone(),
                    other => format!("{other:?}"),
                },
                SpillLine::Unreadable(_) => "<unreadable>".into(),
            })
            .collect()
    }

    fn lines(texts: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for t in texts {
            encode(&row(t), &mut out);
        }
        out
    }

    #[test]
    fn rows_read_back_in_order_and_an_adopter_starts_after_the_committed_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spill = SpillFile::create(dir.path()).expect("create");
        spill.append(&lines(&["a", "b"])).expect("append");
        spill.append(&lines(&["c"])).expect("append");
        let first = spill.read(2).expect("read");
        assert_eq!(texts(&first), ["a", "b"]);
        assert!(spill.unread());
        let SpillLine::Row(_, after_a) = &first[0] else {
            panic!("a row")
        };
        spill.commit(*after_a).expect("commit");
        assert_eq!(texts(&spill.read(10).expect("read")), ["c"]);
        assert!(!spill.unread());

        // Locked while this one holds it.
        assert_eq!(SpillFile::leftovers(dir.path()), [spill.path().to_owned()]);
        assert!(SpillFile::adopt(spill.path()).expect("adopt").is_none());
        let path = spill.path().to_owned();
        drop(spill); // the process "dies": the lock goes, the file stays
        let mut adopted = SpillFile::adopt(&path).expect("adopt").expect("unlocked");
        assert_eq!(texts(&adopted.read(10).expect("read")), ["b", "c"]);
        adopted.remove().expect("remove");
        assert!(SpillFile::leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_torn_last_line_is_given_up_and_a_damaged_one_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spill = SpillFile::create(dir.path()).expect("create");
        let mut bytes = lines(&["a"]);
        bytes.extend_from_slice(b"{\"not\": a row}\n");
        bytes.extend(lines(&["b"]));
        let whole = lines(&["c"]);
        bytes.extend_from_slice(&whole[..whole.len() / 2]);
        spill.append(&bytes).expect("append");
        let path = spill.path().to_owned();
        drop(spill);
        let mut adopted = SpillFile::adopt(&path).expect("adopt").expect("unlocked");
        let read = adopted.read(10).expect("read");
        assert_eq!(
            texts(&read),
            ["a", "<unreadable>", "b", "<unreadable>"],
            "the torn half of c is one unreadable line at the end"
        );
        assert!(!adopted.unread());
    }

    #[test]
    fn a_line_longer_than_a_read_chunk_reads_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spill = SpillFile::create(dir.path()).expect("create");
        let long = "x".repeat(READ_CHUNK * 2);
        spill.append(&lines(&[&long, "short"])).expect("append");
        let read = spill.read(10).expect("read");
        assert_eq!(texts(&read), [long.as_str(), "short"]);
    }

    #[test]
    fn every_kind_of_row_reads_back_as_it_was_written() {
        use switchboard_store::{NewToolExecution, NewTurnMetric, ToolExecutionStatus};
        let mut tool = NewToolExecution::new("call_1", "lookup", "{\"q\": \"é\"}", Some("ok"));
        tool.status = ToolExecutionStatus::Timeout;
        tool.error = Some("no answer in 5 s".into());
        let kinds = [
            row("a \"quoted\"\nline").data,
            CallData::TurnMetric(Box::new(NewTurnMetric {
                turn_index: 3,
                stt_final_ms: Some(1200),
                llm_provider: Some("openai".into()),
                interrupted: true,
                extra: serde_json::json!({"held_ms": 40}),
                ..NewTurnMetric::default()
            })),
            CallData::Metrics(Box::new(serde_json::json!({"turns": 4, "cost": 0.02}))),
            CallData::ToolExecution(Box::new(tool)),
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spill = SpillFile::create(dir.path()).expect("create");
        let mut bytes = Vec::new();
        for data in &kinds {
            let row = CallDataRow {
                org_id: 7,
                call_id: 9,
                data: data.clone(),
            };
            encode(&row, &mut bytes);
        }
        spill.append(&bytes).expect("append");
        let read = spill.read(10).expect("read");
        assert_eq!(read.len(), kinds.len());
        for (line, data) in read.iter().zip(&kinds) {
            let SpillLine::Row(row, _) = line else {
                panic!("a row: {line:?}")
            };
            assert_eq!((row.org_id, row.call_id), (7, 9));
            assert_eq!(format!("{:?}", row.data), format!("{data:?}"));
        }
    }

    #[test]
    fn a_file_that_is_not_a_spill_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("call-data-1-0.spill");
        std::fs::write(&path, b"hello, this is not a header\n").expect("write");
        let err = SpillFile::adopt(&path).expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
