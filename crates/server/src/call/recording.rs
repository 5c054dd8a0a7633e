//! Call audio recording: the caller's track, the assistant's track and their mix, streamed to
//! disk while the call runs and finalised (WAV, or MP3 with the `mp3` cargo feature) when it
//! ends.
//!
//! Three parts, so that the call task never writes a file and memory does not grow with the
//! call's length:
//! - [`CallRecorder`], on the call task, lays every inbound 20 ms caller frame (8 kHz µ-law,
//!   160 bytes) and every bot frame sent to Twilio onto one timeline. The caller's frames are
//!   the clock, the way [`switchboard_core::audio::mix::DuplexMixer`] works: bot audio is queued
//!   when it is sent and laid beside caller audio as it arrives, so it lands where the caller
//!   heard it; a barge-in `clear` ([`CallRecorder::bot_cleared`]) drops bot audio that was
//!   queued but never played. Each second of timeline ([`BLOCK_SAMPLES`]) goes as one [`Block`]
//!   to a bounded queue ([`WRITER_QUEUE_BLOCKS`]); if the writer falls that far behind, a block
//!   is dropped (counted, logged) and its second is written as silence, so the tracks keep the
//!   call's timeline. What a recorder holds is bounded: one block per side (16 KB) and at most
//!   [`MAX_BOT_QUEUE_BYTES`] of bot audio sent ahead of playback ([`CallRecorder::held_bytes`]).
//! - [`SpoolWriter`] (blocking I/O; [`run_writer`] drives it off the call task, each batch of
//!   blocks on the process's spool thread, [`super::spool_thread`]) appends each block to one
//!   spool file per track:
//!   `<base_dir>/org-<organisation id>/<recordings_dir>/call-<call id>-<track>.wav.part`, a µ-law
//!   WAV whose header sizes are fixed when it is finalised. [`SpoolWriter::finish`] fixes them
//!   and renames the file (`wav` at 8000 Hz), or transcodes it block by block (PCM WAV at another
//!   rate, MP3), then [`run_writer`] hands each file to the storage
//!   ([`crate::recording_storage`]).
//! - After a crash, [`find_leftover_spools`] and [`recover_spool`] finalise what a dead process
//!   left (header fixed from the file's length: playable up to the last block written) as a
//!   partial µ-law WAV recording (`call::recovery` stores it and its row at the next start).
//!
//! Files are named by database ids only (never by a caller-supplied string such as the call
//! SID, which two organisations could make sanitise to the same name). Folders are created 0700
//! and files 0600 (Unix): recordings are the owner's alone. Formats:
//! - `wav` at 8000 Hz: G.711 µ-law WAV (format tag 7), the call's audio as it was on the wire.
//! - `wav` at any other rate: 16-bit PCM WAV, decoded and resampled.
//! - `mp3`: only when built with the `mp3` feature (LAME, LGPL-3.0, linked statically, so off by
//!   default); without it an `mp3` request is written as WAV, logged once per process, and
//!   reported in [`RecordingFile::requested_format`].
//!
//! Channels: user and assistant tracks are mono; the mixed track is mono (summed) or, with
//! `channels: 2`, stereo with the caller on the left and the assistant on the right. A recording
//! stops growing at the assistant's `max_call_length` or [`MAX_RECORDING_S`] (2 hours),
//! whichever is shorter.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use switchboard_assistant::{RecordingFormat, RecordingSettings};
use switchboard_core::audio::resample::Resampler;
use switchboard_core::audio::{AudioError, MULAW_SILENCE, SAMPLE_RATE_HZ, mix, mulaw};
use switchboard_store::NewRecording;
use tokio::sync::mpsc;

use crate::recording_storage::{RecordingStorage, StorageError};

/// Longest recording kept, in seconds (2 hours), whatever `max_call_length` says.
pub const MAX_RECORDING_S: u32 = 2 * 60 * 60;

/// Directory used when `recordings_dir` is unset or empty, relative to the base directory.
pub const DEFAULT_RECORDINGS_DIR: &str = "recordings";

/// Samples (8 kHz, one byte each per side) in one [`Block`]: 1 s of the call.
pub const BLOCK_SAMPLES: usize = 8000;

/// Blocks that may wait for the writer (8 s of the call); beyond that a block is dropped.
pub const WRITER_QUEUE_BLOCKS: usize = 8;

/// Most bot audio waiting to be laid onto the timeline, in bytes (60 s). Bot audio is paced with
/// a lead of a few hundred ms, so this only bounds a runtime that sends without a caller clock.
pub const MAX_BOT_QUEUE_BYTES: usize = 60 * SAMPLE_RATE_HZ as usize;

/// Suffix of a spool file, after the track's `.wav`.
pub const SPOOL_SUFFIX: &str = ".part";

/// Length of the µ-law WAV header of a spool file, bytes (RIFF, 18-byte `fmt `, `fact`, `data`).
const MULAW_HEADER_BYTES: u64 = 58;

/// Capacity of the transcoder's file writer buffer, in bytes.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Which audio a recording file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// The caller only.
    User,
    /// The assistant only, as played to the caller (silence where it did not speak).
    Assistant,
    /// Both: summed to mono, or caller left / assistant right in stereo.
    Mixed,
}

impl TrackKind {
    /// Every kind, in the order files are written.
    pub const ALL: [TrackKind; 3] = [TrackKind::User, TrackKind::Assistant, TrackKind::Mixed];

    /// The name used in file names and in the store's `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Mixed => "mixed",
        }
    }

    /// The kind named `name` (as in [`TrackKind::as_str`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// The lowercase name of a recording format, as in file extensions and the store.
pub fn format_str(format: RecordingFormat) -> &'static str {
    match format {
        RecordingFormat::Mp3 => "mp3",
        RecordingFormat::Wav => "wav",
    }
}

/// One finished recording file, before or after it went to storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingFile {
    /// The finished file on this machine (under the base directory).
    pub path: PathBuf,
    /// Its key in storage: `org-<id>/<recordings_dir>/call-<id>-<track>.<ext>`.
    pub key: String,
    /// Which audio it holds.
    pub kind: TrackKind,
    /// The format actually written.
    pub format: RecordingFormat,
    /// The format the assistant asked for; differs from `format` when `mp3` was asked for and
    /// the server was built without the `mp3` feature, or for a recording recovered after a
    /// crash (always µ-law WAV).
    pub requested_format: RecordingFormat,
    /// Length of the audio, ms.
    pub duration_ms: u64,
    /// Size of the file, bytes.
    pub size_bytes: u64,
    /// Sample rate of the file, Hz.
    pub sample_rate_hz: u32,
    /// Channels in the file: 1, or 2 for a stereo mixed track.
    pub channels: u16,
    /// Finalised after a crash: the end of the call is missing.
    pub partial: bool,
}

impl RecordingFile {
    /// The row to insert with `Store::add_recording` for this file, stored at `location`
    /// (what [`RecordingStorage::store`] returned).
    pub fn to_new_recording(&self, location: &str) -> NewRecording {
        NewRecording {
            kind: self.kind.as_str().to_owned(),
            format: format_str(self.format).to_owned(),
            path_or_url: location.to_owned(),
            duration_ms: i64::try_from(self.duration_ms).unwrap_or(i64::MAX),
            size_bytes: i64::try_from(self.size_bytes).unwrap_or(i64::MAX),
            sample_rate: i64::from(self.sample_rate_hz),
            partial: self.partial,
        }
    }
}

/// Why a recording could not be set up or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// `recordings_dir` is absolute or climbs out of the base directory.
    #[error("recordings_dir {dir:?} must be a relative path without `..`")]
    UnsafeDir {
        /// The directory as configured.
        dir: String,
    },
    /// A folder or file could not be created or written.
    #[error("recording file {path:?}: {source}")]
    Io {
        /// The folder or file concerned.
        path: PathBuf,
        /// What the OS reported.
        source: std::io::Error,
    },
    /// The requested sample rate cannot be produced from 8 kHz.
    #[error(transparent)]
    SampleRate(#[from] AudioError),
    /// The audio does not fit a WAV file (data over 4 GiB).
    #[error("recording of {bytes} bytes does not fit a WAV file")]
    TooLarge {
        /// Size of the audio data, bytes.
        bytes: u64,
    },
    /// The MP3 encoder (only with the `mp3` feature) refused its settings or the audio.
    #[error("mp3 encoder: {0}")]
    Mp3(String),
    /// A spool file is not a µ-law WAV this module wrote.
    #[error("spool file {0:?} is not a recording spool")]
    NotASpool(PathBuf),
    /// The finished file could not be stored.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A blocking write or finalisation panicked or was cancelled.
    #[error("recording writer task: {0}")]
    Task(String),
}

/// What to record for one call, from the assistant's `recording_settings`.
#[derive(Debug, Clone)]
pub struct RecordingPlan {
    call_id: i64,
    /// `org-<id>/<recordings_dir>`, relative to the base directory.
    rel_dir: PathBuf,
    requested_format: RecordingFormat,
    sample_rate_hz: u32,
    stereo_mix: bool,
    user_file: bool,
    assistant_file: bool,
    mixed_file: bool,
    with_user: bool,
    with_bot: bool,
    database_records: bool,
    /// Most samples (8 kHz) kept.
    max_samples: usize,
}

impl RecordingPlan {
    /// The plan for one call, or `None` when recording is disabled (`enabled: false`, or no
    /// track selected); an unsafe `recordings_dir` is an error.
    ///
    /// Tracks: caller when `record_user_audio` and `record_user_only_track` are not false;
    /// assistant when `record_assistant_audio` is not false; mixed when `record_mixed_audio` is
    /// not false. `record_user_audio: false` / `record_assistant_audio: false` also keep that
    /// side out of the mix. `record_user_only_track: null` (the organisation's setting) records
    /// the caller track.
    pub fn new(
        settings: &RecordingSettings,
        org_id: i64,
        call_id: i64,
    ) -> Result<Option<Self>, RecordingError> {
        if !settings.enabled {
            return Ok(None);
        }
        let rel_dir = PathBuf::from(format!("org-{org_id}"))
            .join(safe_relative_dir(settings.recordings_dir.as_deref())?);
        let with_user = settings.record_user_audio != Some(false);
        let with_bot = settings.record_assistant_audio != Some(false);
        let user_file = with_user && settings.record_user_only_track != Some(false);
        let assistant_file = with_bot;
        let mixed_file = settings.record_mixed_audio != Some(false) && (with_user || with_bot);
        if !user_file && !assistant_file && !mixed_file {
            tracing::debug!(call_id, "recording enabled but no track selected");
            return Ok(None);
        }
        let sample_rate_hz = match settings.sample_rate {
            Some(0) | None => SAMPLE_RATE_HZ,
            Some(rate) => rate,
        };
        Ok(Some(Self {
            call_id,
            rel_dir,
            requested_format: settings.format.unwrap_or(RecordingFormat::Mp3),
            sample_rate_hz,
            stereo_mix: settings.channels == Some(2),
            user_file,
            assistant_file,
            mixed_file,
            with_user,
            with_bot,
            database_records: settings.create_database_records != Some(false),
            max_samples: MAX_RECORDING_S as usize * SAMPLE_RATE_HZ as usize,
        }))
    }

    /// Like [`RecordingPlan::new`], but an unsafe `recordings_dir` is logged and means no
    /// recording.
    pub fn for_call(settings: &RecordingSettings, org_id: i64, call_id: i64) -> Option<Self> {
        Self::new(settings, org_id, call_id).unwrap_or_else(|e| {
            tracing::error!(call_id, error = %e, "call recording disabled");
            None
        })
    }

    /// Caps the recording at the assistant's `max_call_length` (seconds; `None` = no cap beyond
    /// [`MAX_RECORDING_S`]).
    pub fn with_max_call_length_s(mut self, max_call_length_s: Option<u32>) -> Self {
        let secs = max_call_length_s.map_or(MAX_RECORDING_S, |s| s.clamp(1, MAX_RECORDING_S));
        self.max_samples = secs as usize * SAMPLE_RATE_HZ as usize;
        self
    }

    /// Our call record id.
    pub fn call_id(&self) -> i64 {
        self.call_id
    }

    /// Whether the assistant wants recording rows in the database (`create_database_records`).
    pub fn creates_database_records(&self) -> bool {
        self.database_records
    }

    /// The tracks written, in order.
    fn tracks(&self) -> impl Iterator<Item = TrackKind> + '_ {
        TrackKind::ALL.into_iter().filter(|k| match k {
            TrackKind::User => self.user_file,
            TrackKind::Assistant => self.assistant_file,
            TrackKind::Mixed => self.mixed_file,
        })
    }

    fn channels(&self, kind: TrackKind) -> u16 {
        if kind == TrackKind::Mixed && self.stereo_mix {
            2
        } else {
            1
        }
    }

    /// File name of a finished track in `format`.
    fn file_name(&self, kind: TrackKind, format: RecordingFormat) -> String {
        format!(
            "call-{}-{}.{}",
            self.call_id,
            kind.as_str(),
            format_str(format)
        )
    }
}

/// One second (or, at the end, less) of the call's timeline, for the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Position of the first sample on the call's timeline (8 kHz samples from the start).
    pub start_sample: usize,
    /// The caller's audio (silence when the caller is not recorded).
    pub caller: Vec<u8>,
    /// The bot audio played beside it (silence when the assistant is not recorded); the same
    /// length as `caller`.
    pub bot: Vec<u8>,
}

/// The call-task half of a recording: builds the timeline and hands it on in blocks.
///
/// ```no_run
/// # use switchboard_server::call::recording::{CallRecorder, RecordingPlan, WRITER_QUEUE_BLOCKS};
/// # let settings = switchboard_assistant::RecordingSettings::default();
/// if let Some(plan) = RecordingPlan::for_call(&settings, 3, 7) {
///     let (mut rec, _blocks) = CallRecorder::new(&plan, WRITER_QUEUE_BLOCKS);
///     rec.push_bot(&[0xFF; 160]); // a frame sent to Twilio
///     rec.push_caller(&[0xFF; 160]); // a frame from Twilio: the clock
///     rec.bot_cleared(); // barge-in: what was queued is never recorded
///     rec.finish(); // the last block goes; the writer finalises the files
/// }
/// ```
#[derive(Debug)]
pub struct CallRecorder {
    call_id: i64,
    with_user: bool,
    with_bot: bool,
    /// Boxed blocks: the queue allocates its slots 32 at a time when the call starts, and a
    /// slot of a pointer rather than of a whole block keeps that at 256 bytes per call.
    tx: mpsc::Sender<Box<Block>>,
    /// The block being filled: caller side.
    caller: Vec<u8>,
    /// The block being filled: bot side.
    bot: Vec<u8>,
    /// Where the block being filled starts on the timeline.
    block_start: usize,
    /// Bot audio sent and not yet reached by the caller clock.
    bot_queue: VecDeque<u8>,
    /// Samples (8 kHz) on the caller clock so far.
    samples: usize,
    /// Most samples kept.
    max_samples: usize,
    /// Samples not kept because of `max_samples`.
    dropped_samples: u64,
    /// Bot bytes dropped because the queue was full.
    dropped_bot_bytes: u64,
    /// Blocks dropped because the writer's queue was full or the writer had stopped.
    dropped_blocks: u64,
}

impl CallRecorder {
    /// A recorder for `plan` and the receiving end of its block queue (`queue_blocks` long;
    /// [`WRITER_QUEUE_BLOCKS`] in the runtime), for [`run_writer`].
    pub fn new(plan: &RecordingPlan, queue_blocks: usize) -> (Self, mpsc::Receiver<Box<Block>>) {
        let (tx, rx) = mpsc::channel(queue_blocks.max(1));
        let rec = Self {
            call_id: plan.call_id,
            with_user: plan.with_user,
            with_bot: plan.with_bot,
            tx,
            caller: Vec::with_capacity(BLOCK_SAMPLES),
            bot: Vec::with_capacity(BLOCK_SAMPLES),
            block_start: 0,
            // Grows to what the bot's lead needs (a few hundred ms), not a second up front.
            bot_queue: VecDeque::new(),
            samples: 0,
            max_samples: plan.max_samples,
            dropped_samples: 0,
            dropped_bot_bytes: 0,
            dropped_blocks: 0,
        };
        (rec, rx)
    }

    /// Length recorded so far on the caller clock, ms.
    pub fn duration_ms(&self) -> u64 {
        self.samples as u64 * 1000 / u64::from(SAMPLE_RATE_HZ)
    }

    /// Bytes this recorder holds now (block buffers and queued bot audio): bounded by
    /// `2 × BLOCK_SAMPLES` plus [`MAX_BOT_QUEUE_BYTES`] (rounded up by the queue's growth),
    /// however long the call.
    pub fn held_bytes(&self) -> usize {
        self.caller.capacity() + self.bot.capacity() + self.bot_queue.capacity()
    }

    /// Blocks dropped so far because the writer fell [`WRITER_QUEUE_BLOCKS`] behind.
    pub fn dropped_blocks(&self) -> u64 {
        self.dropped_blocks
    }

    /// One inbound caller frame (8 kHz µ-law, normally 160 bytes / 20 ms). This is the clock:
    /// queued bot audio of the same length is laid beside it.
    pub fn push_caller(&mut self, frame: &[u8]) {
        let room = self.max_samples.saturating_sub(self.samples);
        let n = frame.len().min(room);
        if n < frame.len() {
            self.dropped_samples += (frame.len() - n) as u64;
            // Nothing more will be laid down; keep the queue from growing.
            self.bot_queue.clear();
        }
        let mut rest = frame.get(..n).unwrap_or(frame);
        while !rest.is_empty() {
            let take = rest.len().min(BLOCK_SAMPLES - self.caller.len());
            let (now, later) = rest.split_at(take);
            if self.with_user {
                self.caller.extend_from_slice(now);
            } else {
                self.caller.resize(self.caller.len() + take, MULAW_SILENCE);
            }
            let from_queue = take.min(self.bot_queue.len());
            self.bot.extend(self.bot_queue.drain(..from_queue));
            self.bot
                .resize(self.bot.len() + take - from_queue, MULAW_SILENCE);
            self.samples += take;
            if self.caller.len() == BLOCK_SAMPLES {
                self.send_block();
            }
            rest = later;
        }
    }

    /// One bot frame sent to Twilio (8 kHz µ-law, 20 ms); it plays from the next caller frame.
    pub fn push_bot(&mut self, frame: &[u8; 160]) {
        if !self.with_bot || self.samples >= self.max_samples {
            return;
        }
        let room = MAX_BOT_QUEUE_BYTES.saturating_sub(self.bot_queue.len());
        let n = frame.len().min(room);
        self.bot_queue.extend(frame.iter().take(n));
        self.dropped_bot_bytes += (frame.len() - n) as u64;
    }

    /// Playback was cleared (barge-in): bot audio sent but not yet played is never recorded.
    pub fn bot_cleared(&mut self) {
        self.bot_queue.clear();
    }

    /// Hands the block being filled to the writer (without waiting: a full queue drops it).
    fn send_block(&mut self) {
        if self.caller.is_empty() {
            return;
        }
        let block = Box::new(Block {
            start_sample: self.block_start,
            caller: std::mem::replace(&mut self.caller, Vec::with_capacity(BLOCK_SAMPLES)),
            bot: std::mem::replace(&mut self.bot, Vec::with_capacity(BLOCK_SAMPLES)),
        });
        self.block_start = self.samples;
        if self.tx.try_send(block).is_err() {
            self.dropped_blocks += 1;
        }
    }

    /// The call ended: the last (partial) block goes to the writer and the queue closes, so
    /// the writer finalises the files.
    pub fn finish(mut self) {
        self.send_block();
        if self.dropped_samples > 0 {
            tracing::warn!(
                call_id = self.call_id,
                dropped_ms = self.dropped_samples / 8,
                "recording reached its length cap; the rest of the call was not recorded"
            );
        }
        if self.dropped_bot_bytes > 0 {
            tracing::warn!(
                call_id = self.call_id,
                dropped_ms = self.dropped_bot_bytes / 8,
                "assistant audio arrived far ahead of the caller clock; the excess was not recorded"
            );
        }
        if self.dropped_blocks > 0 {
            tracing::warn!(
                call_id = self.call_id,
                dropped_s = self.dropped_blocks,
                "the recording writer fell behind; those seconds are silent in the recording"
            );
        }
    }
}

/// One open spool file.
#[derive(Debug)]
struct Spool {
    kind: TrackKind,
    channels: u16,
    path: PathBuf,
    file: File,
}

/// The blocking half of a recording: appends blocks to the spool files and finalises them.
#[derive(Debug)]
pub struct SpoolWriter {
    plan: RecordingPlan,
    base_dir: PathBuf,
    /// Opened at the first block, so a call without audio writes nothing.
    spools: Vec<Spool>,
    /// Samples written per track.
    written: usize,
}

impl SpoolWriter {
    /// A writer for `plan`'s tracks under `base_dir`.
    pub fn new(plan: RecordingPlan, base_dir: &Path) -> Self {
        Self {
            plan,
            base_dir: base_dir.to_path_buf(),
            spools: Vec::new(),
            written: 0,
        }
    }

    fn dir(&self) -> PathBuf {
        self.base_dir.join(&self.plan.rel_dir)
    }

    fn open_spools(&mut self) -> Result<(), RecordingError> {
        let dir = self.dir();
        create_private_dir_all(&dir).map_err(io_at(&dir))?;
        let kinds: Vec<TrackKind> = self.plan.tracks().collect();
        for kind in kinds {
            let channels = self.plan.channels(kind);
            let name = self.plan.file_name(kind, RecordingFormat::Wav);
            let path = dir.join(format!("{name}{SPOOL_SUFFIX}"));
            let mut file = create_private_file(&path).map_err(io_at(&path))?;
            let header = wav_header(WavEncoding::Mulaw, channels, SAMPLE_RATE_HZ, 0)?;
            file.write_all(&header).map_err(io_at(&path))?;
            self.spools.push(Spool {
                kind,
                channels,
                path,
                file,
            });
        }
        Ok(())
    }

    /// Appends one block to every track (a gap before it, left by a dropped block, is written
    /// as silence so the tracks keep the call's timeline).
    pub fn write(&mut self, block: &Block) -> Result<(), RecordingError> {
        if self.spools.is_empty() {
            self.open_spools()?;
        }
        let silence = [MULAW_SILENCE; 160];
        while self.written < block.start_sample {
            let n = (block.start_sample - self.written).min(silence.len());
            let gap = Block {
                start_sample: self.written,
                caller: silence[..n].to_vec(),
                bot: silence[..n].to_vec(),
            };
            self.append(&gap)?;
        }
        self.append(block)
    }

    /// Appends one block to every track. The mixed track is built in a buffer made for this
    /// write and freed after it, so an idle call holds none (one per call would be 16 KiB of
    /// every live call's memory for a write a second).
    fn append(&mut self, block: &Block) -> Result<(), RecordingError> {
        let n = block.caller.len().min(block.bot.len());
        let (caller, bot) = (&block.caller[..n], &block.bot[..n]);
        let mut mixed = Vec::new();
        for spool in &mut self.spools {
            let bytes: &[u8] = match (spool.kind, spool.channels) {
                (TrackKind::User, _) => caller,
                (TrackKind::Assistant, _) => bot,
                (TrackKind::Mixed, 2) => {
                    mixed.clear();
                    mixed.reserve_exact(2 * n);
                    for (&l, &r) in caller.iter().zip(bot) {
                        mixed.push(l);
                        mixed.push(r);
                    }
                    &mixed
                }
                (TrackKind::Mixed, _) => {
                    mixed.clear();
                    mixed.extend(caller.iter().zip(bot).map(|(&a, &b)| mix::mix_sample(a, b)));
                    &mixed
                }
            };
            spool.file.write_all(bytes).map_err(io_at(&spool.path))?;
        }
        self.written += n;
        Ok(())
    }

    /// Finalises every track: header sizes fixed, then renamed (µ-law WAV at 8 kHz) or
    /// transcoded to the requested rate and format. Returns one [`RecordingFile`] per file, or
    /// none for a call without audio.
    pub fn finish(self) -> Result<Vec<RecordingFile>, RecordingError> {
        let format = effective_format(self.plan.requested_format);
        if format != self.plan.requested_format {
            // Once per process (every call of a record left at its `mp3` default would say
            // it); each recording's row says which format was asked for and which written.
            static WARNED: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    call_id = self.plan.call_id,
                    "mp3 recording requested but this server was built without the `mp3` feature; writing WAV (said once per process)"
                );
            }
        }
        let dir = self.dir();
        let mut files = Vec::new();
        for spool in self.spools {
            spool.file.sync_all().map_err(io_at(&spool.path))?;
            drop(spool.file);
            let (channels, frames) = finalize_spool(&spool.path)?;
            let name = self.plan.file_name(spool.kind, format);
            let path = dir.join(&name);
            let mulaw_wav =
                format == RecordingFormat::Wav && self.plan.sample_rate_hz == SAMPLE_RATE_HZ;
            if mulaw_wav {
                std::fs::rename(&spool.path, &path).map_err(io_at(&path))?;
            } else {
                transcode(
                    &spool.path,
                    &path,
                    format,
                    channels,
                    self.plan.sample_rate_hz,
                    frames,
                )?;
                std::fs::remove_file(&spool.path).map_err(io_at(&spool.path))?;
            }
            let size_bytes = std::fs::metadata(&path).map_err(io_at(&path))?.len();
            files.push(RecordingFile {
                key: storage_key(&self.plan.rel_dir, &name),
                path,
                kind: spool.kind,
                format,
                requested_format: self.plan.requested_format,
                duration_ms: frames * 1000 / u64::from(SAMPLE_RATE_HZ),
                size_bytes,
                sample_rate_hz: self.plan.sample_rate_hz,
                channels,
                partial: false,
            });
        }
        Ok(files)
    }
}

/// A finished recording and where storage put it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecording {
    /// The file as written.
    pub file: RecordingFile,
    /// Its location in storage, for the row.
    pub location: String,
}

/// The task of [`run_writer`]: what was stored, once the recording is finished.
pub type RecordingJob = tokio::task::JoinHandle<Result<Vec<StoredRecording>, RecordingError>>;

/// Drives `writer` off the call task: each batch of blocks the recorder queued is written on
/// the spool thread ([`super::spool_thread`]); once the recorder is finished (the queue
/// closed) the tracks are finalised (blocking, in `spawn_blocking`) and handed to `storage`.
/// Returns what was stored.
pub async fn run_writer(
    writer: SpoolWriter,
    mut blocks: mpsc::Receiver<Box<Block>>,
    storage: RecordingStorage,
) -> Result<Vec<StoredRecording>, RecordingError> {
    let mut writer = writer;
    let mut batch = Vec::with_capacity(WRITER_QUEUE_BLOCKS);
    while blocks.recv_many(&mut batch, WRITER_QUEUE_BLOCKS).await > 0 {
        let work = std::mem::take(&mut batch);
        let (w, result, work) = super::spool_thread::run(move || {
            let mut w = writer;
            let result = work.iter().try_for_each(|b| w.write(b));
            (w, result, work)
        })
        .await
        .map_err(|e| RecordingError::Task(e.to_string()))?;
        writer = w;
        result?;
        batch = work;
        batch.clear();
    }
    let files = tokio::task::spawn_blocking(move || writer.finish())
        .await
        .map_err(|e| RecordingError::Task(e.to_string()))??;
    let mut stored = Vec::with_capacity(files.len());
    for file in files {
        let location = storage.store(&file.path, &file.key).await?;
        stored.push(StoredRecording { file, location });
    }
    Ok(stored)
}

/// Fixes the header of the µ-law WAV spool at `path` from its length (a trailing half sample
/// frame of a stereo spool is cut; odd data gets its pad byte). Returns its channels and
/// frames (samples per channel).
pub fn finalize_spool(path: &Path) -> Result<(u16, u64), RecordingError> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_at(path))?;
    let mut header = [0u8; MULAW_HEADER_BYTES as usize];
    file.read_exact(&mut header)
        .map_err(|_| RecordingError::NotASpool(path.to_path_buf()))?;
    let tag = u16::from_le_bytes([header[20], header[21]]);
    let channels = u16::from_le_bytes([header[22], header[23]]);
    if &header[0..4] != b"RIFF"
        || &header[8..12] != b"WAVE"
        || tag != 7
        || !(1..=2).contains(&channels)
    {
        return Err(RecordingError::NotASpool(path.to_path_buf()));
    }
    let len = file.metadata().map_err(io_at(path))?.len();
    let frames = (len - MULAW_HEADER_BYTES) / u64::from(channels);
    let data_bytes = frames * u64::from(channels);
    file.set_len(MULAW_HEADER_BYTES + data_bytes)
        .map_err(io_at(path))?;
    if data_bytes % 2 == 1 {
        file.seek(SeekFrom::End(0)).map_err(io_at(path))?;
        file.write_all(&[0]).map_err(io_at(path))?;
    }
    let header = wav_header(WavEncoding::Mulaw, channels, SAMPLE_RATE_HZ, frames)?;
    file.seek(SeekFrom::Start(0)).map_err(io_at(path))?;
    file.write_all(&header).map_err(io_at(path))?;
    file.sync_all().map_err(io_at(path))?;
    Ok((channels, frames))
}

/// Writes the µ-law WAV spool `from` (finalised, `frames` frames of `channels`) to `to` as
/// `format` at `rate_hz`, block by block.
fn transcode(
    from: &Path,
    to: &Path,
    format: RecordingFormat,
    channels: u16,
    rate_hz: u32,
    frames: u64,
) -> Result<(), RecordingError> {
    let mut input = File::open(from).map_err(io_at(from))?;
    input
        .seek(SeekFrom::Start(MULAW_HEADER_BYTES))
        .map_err(io_at(from))?;
    #[cfg(not(feature = "mp3"))]
    if format == RecordingFormat::Mp3 {
        // `effective_format` never picks MP3 without the feature.
        return Err(RecordingError::Mp3(
            "this server was built without the `mp3` feature".to_owned(),
        ));
    }
    // Not the spool's own name (`….wav.part`), which is being read.
    let tmp = to.with_extension(format!("{}.tmp", format_str(format)));
    let file = create_private_file(&tmp).map_err(io_at(&tmp))?;
    let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
    let werr = io_at(&tmp);
    let out_frames = frames * u64::from(rate_hz) / u64::from(SAMPLE_RATE_HZ);
    let mut pipeline = PcmPipeline::new(channels, rate_hz, out_frames)?;
    #[cfg(feature = "mp3")]
    let mut encoder = match format {
        RecordingFormat::Mp3 => Some(mp3::Mp3Writer::new(channels, rate_hz)?),
        RecordingFormat::Wav => None,
    };
    if format == RecordingFormat::Wav {
        let header = wav_header(WavEncoding::Pcm16, channels, rate_hz, out_frames)?;
        out.write_all(&header).map_err(io_at(&tmp))?;
    }
    let mut bytes = Vec::with_capacity(WRITE_BUFFER_BYTES);
    let mut emit = |pcm: &[i16]| -> Result<(), RecordingError> {
        #[cfg(feature = "mp3")]
        if let Some(enc) = encoder.as_mut() {
            let mp3 = enc.encode(pcm)?;
            return out.write_all(mp3).map_err(io_at(&tmp));
        }
        bytes.clear();
        for s in pcm {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        out.write_all(&bytes).map_err(io_at(&tmp))
    };
    let width = usize::from(channels);
    let mut raw = vec![0u8; BLOCK_SAMPLES * width];
    let mut left = vec![0u8; BLOCK_SAMPLES];
    let mut right = vec![0u8; BLOCK_SAMPLES];
    let mut remaining = frames;
    while remaining > 0 {
        let n = (remaining as usize).min(BLOCK_SAMPLES);
        let chunk = &mut raw[..n * width];
        input.read_exact(chunk).map_err(io_at(from))?;
        if width == 2 {
            for (i, pair) in chunk.chunks_exact(2).enumerate() {
                left[i] = pair[0];
                right[i] = pair[1];
            }
            pipeline.push(&[&left[..n], &right[..n]], &mut emit)?;
        } else {
            pipeline.push(&[&chunk[..n]], &mut emit)?;
        }
        remaining -= n as u64;
    }
    pipeline.finish(&mut emit)?;
    #[cfg(feature = "mp3")]
    if let Some(enc) = encoder.as_mut() {
        let tail = enc.flush()?;
        out.write_all(tail).map_err(io_at(&tmp))?;
    }
    out.flush().map_err(io_at(&tmp))?;
    out.get_ref().sync_all().map_err(werr)?;
    drop(out);
    std::fs::rename(&tmp, to).map_err(io_at(to))
}

/// A spool file a stopped process left behind (it died before finishing the call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftoverSpool {
    /// The spool file.
    pub path: PathBuf,
    /// Organisation of its folder.
    pub org_id: i64,
    /// Call of its name.
    pub call_id: i64,
    /// Track of its name.
    pub kind: TrackKind,
}

/// Deepest folder searched under an organisation's folder (`recordings_dir` may be nested).
const MAX_SPOOL_DEPTH: usize = 8;

/// The spool files under `base_dir` (`org-<id>/…/call-<id>-<track>.wav.part`). Blocking.
pub fn find_leftover_spools(base_dir: &Path) -> Vec<LeftoverSpool> {
    let mut found = Vec::new();
    let Ok(orgs) = std::fs::read_dir(base_dir) else {
        return found;
    };
    for entry in orgs.flatten() {
        let name = entry.file_name();
        let Some(org_id) = name
            .to_str()
            .and_then(|n| n.strip_prefix("org-"))
            .and_then(|id| id.parse::<i64>().ok())
        else {
            continue;
        };
        let mut stack = vec![(entry.path(), 0usize)];
        while let Some((dir, depth)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                let Ok(kind) = e.file_type() else { continue };
                if kind.is_dir() && depth < MAX_SPOOL_DEPTH {
                    stack.push((path, depth + 1));
                } else if kind.is_file()
                    && let Some((call_id, track)) = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(parse_spool_name)
                {
                    found.push(LeftoverSpool {
                        path,
                        org_id,
                        call_id,
                        kind: track,
                    });
                }
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

/// `call-<id>-<track>.wav.part` → (call id, track).
fn parse_spool_name(name: &str) -> Option<(i64, TrackKind)> {
    let stem = name.strip_prefix("call-")?.strip_suffix(".wav.part")?;
    let (id, track) = stem.split_once('-')?;
    Some((id.parse().ok()?, TrackKind::from_name(track)?))
}

/// Finalises a leftover spool as a partial µ-law WAV recording next to it (header fixed from
/// its length, renamed to `.wav`). `None` when it holds no audio (it is then removed).
/// Blocking.
pub fn recover_spool(
    spool: &LeftoverSpool,
    base_dir: &Path,
) -> Result<Option<RecordingFile>, RecordingError> {
    let (channels, frames) = finalize_spool(&spool.path)?;
    if frames == 0 {
        std::fs::remove_file(&spool.path).map_err(io_at(&spool.path))?;
        return Ok(None);
    }
    let path = spool.path.with_extension("");
    std::fs::rename(&spool.path, &path).map_err(io_at(&path))?;
    let rel = path.strip_prefix(base_dir).unwrap_or(&path);
    let key = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    let size_bytes = std::fs::metadata(&path).map_err(io_at(&path))?.len();
    Ok(Some(RecordingFile {
        path,
        key,
        kind: spool.kind,
        format: RecordingFormat::Wav,
        requested_format: RecordingFormat::Wav,
        duration_ms: frames * 1000 / u64::from(SAMPLE_RATE_HZ),
        size_bytes,
        sample_rate_hz: SAMPLE_RATE_HZ,
        channels,
        partial: true,
    }))
}

/// The storage key of `name` in `rel_dir`, with `/` separators.
fn storage_key(rel_dir: &Path, name: &str) -> String {
    let mut parts: Vec<String> = rel_dir
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.push(name.to_owned());
    parts.join("/")
}

fn io_at(path: &Path) -> impl Fn(std::io::Error) -> RecordingError + use<> {
    let path = path.to_path_buf();
    move |source| RecordingError::Io {
        path: path.clone(),
        source,
    }
}

/// The format written for a requested one: MP3 needs the `mp3` feature, otherwise WAV.
pub fn effective_format(requested: RecordingFormat) -> RecordingFormat {
    match requested {
        RecordingFormat::Mp3 if cfg!(feature = "mp3") => RecordingFormat::Mp3,
        RecordingFormat::Mp3 | RecordingFormat::Wav => RecordingFormat::Wav,
    }
}

/// `recordings_dir` as a relative path that stays under the base directory: no root, no
/// drive prefix, no `..`. Unset or empty means [`DEFAULT_RECORDINGS_DIR`].
fn safe_relative_dir(dir: Option<&str>) -> Result<PathBuf, RecordingError> {
    let dir = match dir.map(str::trim) {
        None | Some("") => DEFAULT_RECORDINGS_DIR,
        Some(d) => d,
    };
    let unsafe_dir = || RecordingError::UnsafeDir {
        dir: dir.to_owned(),
    };
    if dir.contains('\0') || dir.starts_with('\\') {
        return Err(unsafe_dir());
    }
    let mut out = PathBuf::new();
    for component in Path::new(dir).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_dir());
            }
        }
    }
    Ok(out)
}

/// Creates `dir` and its missing parents readable by the owner only (0700 on Unix).
pub(crate) fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates (or truncates a leftover of) `path` for writing, readable by the owner only (0600 on
/// Unix).
pub(crate) fn create_private_file(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Sample encoding inside a WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WavEncoding {
    /// G.711 µ-law, 8 bits (format tag 7).
    Mulaw,
    /// Linear PCM, 16 bits little-endian (format tag 1).
    Pcm16,
}

/// A canonical WAV header for `frames` samples per channel. µ-law gets the 18-byte `fmt ` chunk
/// and the `fact` chunk that non-PCM formats require.
fn wav_header(
    encoding: WavEncoding,
    channels: u16,
    rate_hz: u32,
    frames: u64,
) -> Result<Vec<u8>, RecordingError> {
    let (tag, bits): (u16, u16) = match encoding {
        WavEncoding::Mulaw => (7, 8),
        WavEncoding::Pcm16 => (1, 16),
    };
    let block_align = channels * (bits / 8);
    let data_bytes = frames * u64::from(block_align);
    let pad = data_bytes % 2;
    let fmt_len: u32 = if encoding == WavEncoding::Mulaw {
        18
    } else {
        16
    };
    let fact_len: u64 = if encoding == WavEncoding::Mulaw {
        12
    } else {
        0
    };
    let riff_len = 4 + 8 + u64::from(fmt_len) + fact_len + 8 + data_bytes + pad;
    let too_large = || RecordingError::TooLarge { bytes: data_bytes };
    let riff_len = u32::try_from(riff_len).map_err(|_| too_large())?;
    let data_len = u32::try_from(data_bytes).map_err(|_| too_large())?;
    let mut h = Vec::with_capacity(58);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&riff_len.to_le_bytes());
    h.extend_from_slice(b"WAVE");
    h.extend_from_slice(b"fmt ");
    h.extend_from_slice(&fmt_len.to_le_bytes());
    h.extend_from_slice(&tag.to_le_bytes());
    h.extend_from_slice(&channels.to_le_bytes());
    h.extend_from_slice(&rate_hz.to_le_bytes());
    h.extend_from_slice(&(rate_hz * u32::from(block_align)).to_le_bytes());
    h.extend_from_slice(&block_align.to_le_bytes());
    h.extend_from_slice(&bits.to_le_bytes());
    if encoding == WavEncoding::Mulaw {
        h.extend_from_slice(&0u16.to_le_bytes()); // cbSize: no extension
        h.extend_from_slice(b"fact");
        h.extend_from_slice(&4u32.to_le_bytes());
        h.extend_from_slice(
            &u32::try_from(frames)
                .map_err(|_| too_large())?
                .to_le_bytes(),
        );
    }
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    Ok(h)
}

/// µ-law at 8 kHz in, interleaved 16-bit PCM at the output rate out, exactly `frames` frames
/// (the resampler's start-up delay is skipped, its tail flushed, and any rounding padded with
/// silence or trimmed).
struct PcmPipeline {
    resamplers: Vec<Resampler>,
    /// Output samples still to drop per channel (the filter's start-up).
    skip: Vec<usize>,
    /// The filter's delay, output samples.
    delay: usize,
    decoded: Vec<i16>,
    pending: Vec<Vec<i16>>,
    remaining: u64,
    interleaved: Vec<i16>,
}

impl PcmPipeline {
    fn new(channels: u16, rate_hz: u32, frames: u64) -> Result<Self, RecordingError> {
        let mut resamplers = Vec::new();
        for _ in 0..channels {
            resamplers.push(Resampler::new(SAMPLE_RATE_HZ, rate_hz)?);
        }
        let skip: Vec<usize> = resamplers.iter().map(Resampler::delay_samples).collect();
        Ok(Self {
            resamplers,
            delay: skip.iter().copied().max().unwrap_or(0),
            skip,
            decoded: vec![0; BLOCK_SAMPLES],
            pending: vec![Vec::new(); usize::from(channels)],
            remaining: frames,
            interleaved: Vec::new(),
        })
    }

    fn push(
        &mut self,
        chans: &[&[u8]],
        emit: &mut impl FnMut(&[i16]) -> Result<(), RecordingError>,
    ) -> Result<(), RecordingError> {
        for (((input, rs), pending), skip) in chans
            .iter()
            .zip(self.resamplers.iter_mut())
            .zip(self.pending.iter_mut())
            .zip(self.skip.iter_mut())
        {
            self.decoded.resize(input.len(), 0);
            mulaw::decode_into(input, &mut self.decoded);
            let before = pending.len();
            rs.process(&self.decoded, pending);
            let skipped = (*skip).min(pending.len() - before);
            pending.drain(before..before + skipped);
            *skip -= skipped;
        }
        self.emit_ready(emit)
    }

    fn emit_ready(
        &mut self,
        emit: &mut impl FnMut(&[i16]) -> Result<(), RecordingError>,
    ) -> Result<(), RecordingError> {
        let ready = self.pending.iter().map(Vec::len).min().unwrap_or(0);
        let n = (ready as u64).min(self.remaining) as usize;
        if n > 0 {
            self.interleaved.clear();
            for i in 0..n {
                for ch in &self.pending {
                    self.interleaved.push(ch.get(i).copied().unwrap_or(0));
                }
            }
            emit(&self.interleaved)?;
            self.remaining -= n as u64;
        }
        for ch in &mut self.pending {
            let k = ready.min(ch.len());
            ch.drain(..k);
        }
        Ok(())
    }

    fn finish(
        mut self,
        emit: &mut impl FnMut(&[i16]) -> Result<(), RecordingError>,
    ) -> Result<(), RecordingError> {
        let rate_hz = self
            .resamplers
            .first()
            .map_or(SAMPLE_RATE_HZ, Resampler::to_hz);
        let tail_in = self.delay * SAMPLE_RATE_HZ as usize / rate_hz.max(1) as usize;
        for ((rs, pending), skip) in self
            .resamplers
            .iter_mut()
            .zip(self.pending.iter_mut())
            .zip(self.skip.iter_mut())
        {
            // Push the filter's delayed tail out with silence, then pad to a whole block.
            let before = pending.len();
            let zeros = vec![0i16; tail_in + 160];
            rs.process(&zeros, pending);
            rs.flush(pending);
            let skipped = (*skip).min(pending.len() - before);
            pending.drain(before..before + skipped);
            *skip -= skipped;
        }
        self.emit_ready(emit)?;
        let channels = self.pending.len().max(1);
        let silence = vec![0i16; BLOCK_SAMPLES * channels];
        while self.remaining > 0 {
            let n = (self.remaining as usize).min(BLOCK_SAMPLES);
            emit(silence.get(..n * channels).unwrap_or(&[]))?;
            self.remaining -= n as u64;
        }
        Ok(())
    }
}

#[cfg(feature = "mp3")]
mod mp3 {
    //! MP3 encoding with LAME (LGPL-3.0, statically linked; only with the `mp3` feature).

    use super::RecordingError;
    use mp3lame_encoder::{Bitrate, Builder, Encoder, FlushNoGap, InterleavedPcm, MonoPcm};
    use std::num::NonZeroU32;

    /// A LAME encoder at a constant bitrate suited to speech at the given rate.
    pub(super) struct Mp3Writer {
        encoder: Encoder,
        channels: u16,
        buf: Vec<u8>,
    }

    fn err(what: &str, e: impl std::fmt::Display) -> RecordingError {
        RecordingError::Mp3(format!("{what}: {e}"))
    }

    impl Mp3Writer {
        pub(super) fn new(channels: u16, rate_hz: u32) -> Result<Self, RecordingError> {
            let bitrate = match (rate_hz, channels) {
                (..=12_000, 1) => Bitrate::Kbps24,
                (..=12_000, _) => Bitrate::Kbps48,
                (..=24_000, 1) => Bitrate::Kbps48,
                (..=24_000, _) => Bitrate::Kbps64,
                (_, 1) => Bitrate::Kbps64,
                _ => Bitrate::Kbps128,
            };
            let mut b = Builder::new().ok_or_else(|| err("init", "LAME returned no encoder"))?;
            b.set_num_channels(u8::try_from(channels).unwrap_or(1))
                .map_err(|e| err("channels", e))?;
            b.set_sample_rate(rate_hz)
                .map_err(|e| err("sample rate", e))?;
            b.set_output_sample_rate(NonZeroU32::new(rate_hz))
                .map_err(|e| err("output sample rate", e))?;
            b.set_brate(bitrate).map_err(|e| err("bitrate", e))?;
            b.set_to_write_vbr_tag(false)
                .map_err(|e| err("vbr tag", e))?;
            let encoder = b.build().map_err(|e| err("build", e))?;
            Ok(Self {
                encoder,
                channels,
                buf: Vec::new(),
            })
        }

        /// Encodes interleaved PCM; returns the MP3 bytes produced (possibly none).
        pub(super) fn encode(&mut self, pcm: &[i16]) -> Result<&[u8], RecordingError> {
            self.buf.clear();
            let frames = pcm.len() / usize::from(self.channels.max(1));
            self.buf
                .reserve(mp3lame_encoder::max_required_buffer_size(frames));
            let res = if self.channels == 2 {
                self.encoder
                    .encode_to_vec(InterleavedPcm(pcm), &mut self.buf)
            } else {
                self.encoder.encode_to_vec(MonoPcm(pcm), &mut self.buf)
            };
            res.map_err(|e| err("encode", e))?;
            Ok(&self.buf)
        }

        /// Flushes the encoder's last frames.
        pub(super) fn flush(&mut self) -> Result<&[u8], RecordingError> {
            self.buf.clear();
            self.buf
                .reserve(mp3lame_encoder::max_required_buffer_size(0));
            self.encoder
                .flush_to_vec::<FlushNoGap>(&mut self.buf)
                .map_err(|e| err("flush", e))?;
            Ok(&self.buf)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a WAV file says about itself, parsed chunk by chunk.
    #[derive(Debug)]
    struct Wav {
        tag: u16,
        channels: u16,
        rate_hz: u32,
        byte_rate: u32,
        block_align: u16,
        bits: u16,
        fact_frames: Option<u32>,
        data: Vec<u8>,
    }

    fn u16_at(b: &[u8], i: usize) -> u16 {
        u16::from_le_bytes([b[i], b[i + 1]])
    }

    fn u32_at(b: &[u8], i: usize) -> u32 {
        u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
    }

    fn parse_wav(bytes: &[u8]) -> Wav {
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(u32_at(bytes, 4) as usize, bytes.len() - 8, "RIFF size");
        assert_eq!(&bytes[8..12], b"WAVE");
        let mut i = 12;
        let mut fmt = None;
        let mut fact = None;
        let mut data = None;
        while i + 8 <= bytes.len() {
            let id = &bytes[i..i + 4];
            let len = u32_at(bytes, i + 4) as usize;
            let body = &bytes[i + 8..i + 8 + len];
            match id {
                b"fmt " => fmt = Some(body.to_vec()),
                b"fact" => fact = Some(u32_at(body, 0)),
                b"data" => data = Some(body.to_vec()),
                other => panic!("unexpected chunk {other:?}"),
            }
            i += 8 + len + len % 2;
        }
        assert_eq!(i, bytes.len(), "chunks cover the file");
        let fmt = fmt.expect("fmt chunk");
        Wav {
            tag: u16_at(&fmt, 0),
            channels: u16_at(&fmt, 2),
            rate_hz: u32_at(&fmt, 4),
            byte_rate: u32_at(&fmt, 8),
            block_align: u16_at(&fmt, 12),
            bits: u16_at(&fmt, 14),
            fact_frames: fact,
            data: data.expect("data chunk"),
        }
    }

    /// A recorder and its writer run synchronously, as the runtime runs them on two tasks.
    struct TestRec {
        rec: CallRecorder,
        rx: mpsc::Receiver<Box<Block>>,
        writer: SpoolWriter,
    }

    impl TestRec {
        fn new(s: &RecordingSettings, dir: &Path, org: i64, call: i64) -> Option<TestRec> {
            let plan = RecordingPlan::new(s, org, call).ok()??;
            Some(Self::from_plan(plan, dir))
        }

        fn from_plan(plan: RecordingPlan, dir: &Path) -> TestRec {
            let (rec, rx) = CallRecorder::new(&plan, 1 << 16);
            TestRec {
                rec,
                rx,
                writer: SpoolWriter::new(plan, dir),
            }
        }

        fn with_max_call_length_s(self, s: Option<u32>) -> TestRec {
            let plan = self.writer.plan.clone().with_max_call_length_s(s);
            Self::from_plan(plan, &self.writer.base_dir.clone())
        }

        fn push_caller(&mut self, frame: &[u8]) {
            self.rec.push_caller(frame);
        }

        fn push_bot(&mut self, frame: &[u8; 160]) {
            self.rec.push_bot(frame);
        }

        fn bot_cleared(&mut self) {
            self.rec.bot_cleared();
        }

        fn duration_ms(&self) -> u64 {
            self.rec.duration_ms()
        }

        fn finish(self) -> Result<Vec<RecordingFile>, RecordingError> {
            let TestRec {
                rec,
                mut rx,
                mut writer,
            } = self;
            rec.finish();
            while let Ok(block) = rx.try_recv() {
                writer.write(&block)?;
            }
            writer.finish()
        }
    }

    fn settings(format: RecordingFormat, rate_hz: u32) -> RecordingSettings {
        RecordingSettings {
            format: Some(format),
            sample_rate: Some(rate_hz),
            ..RecordingSettings::default()
        }
    }

    fn tone(sample: i16) -> [u8; 160] {
        [mulaw::encode(sample); 160]
    }

    fn file_of(files: &[RecordingFile], kind: TrackKind) -> &RecordingFile {
        files
            .iter()
            .find(|f| f.kind == kind)
            .expect("track written")
    }

    #[test]
    fn disabled_or_no_track_means_no_recorder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let off = RecordingSettings {
            enabled: false,
            ..RecordingSettings::default()
        };
        assert!(TestRec::new(&off, dir.path(), 1, 1).is_none());
        let none = RecordingSettings {
            record_user_audio: Some(false),
            record_assistant_audio: Some(false),
            ..RecordingSettings::default()
        };
        assert!(TestRec::new(&none, dir.path(), 1, 1).is_none());
        assert!(TestRec::new(&RecordingSettings::default(), dir.path(), 1, 1).is_some());
    }

    #[test]
    fn mulaw_wav_header_and_durations_match_frames_pushed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rec =
            TestRec::new(&settings(RecordingFormat::Wav, 8000), dir.path(), 4, 9).expect("enabled");
        for _ in 0..50 {
            rec.push_caller(&tone(1000));
        }
        assert_eq!(rec.duration_ms(), 1000);
        let files = rec.finish().expect("written");
        assert_eq!(files.len(), 3);
        for f in &files {
            let bytes = std::fs::read(&f.path).expect("file");
            assert_eq!(f.size_bytes, bytes.len() as u64);
            assert_eq!(f.duration_ms, 1000);
            assert_eq!(f.sample_rate_hz, 8000);
            assert_eq!(f.format, RecordingFormat::Wav);
            assert_eq!(f.requested_format, RecordingFormat::Wav);
            assert_eq!(
                f.path,
                dir.path()
                    .join("org-4")
                    .join("recordings")
                    .join(format!("call-9-{}.wav", f.kind.as_str()))
            );
            let wav = parse_wav(&bytes);
            assert_eq!(
                (
                    wav.tag,
                    wav.channels,
                    wav.rate_hz,
                    wav.byte_rate,
                    wav.block_align,
                    wav.bits
                ),
                (7, 1, 8000, 8000, 1, 8)
            );
            assert_eq!(wav.fact_frames, Some(8000));
            assert_eq!(wav.data.len(), 8000);
        }
        let user = parse_wav(&std::fs::read(&file_of(&files, TrackKind::User).path).expect("f"));
        assert!(user.data.iter().all(|&b| b == mulaw::encode(1000)));
        let bot =
            parse_wav(&std::fs::read(&file_of(&files, TrackKind::Assistant).path).expect("f"));
        assert!(bot.data.iter().all(|&b| b == MULAW_SILENCE));
        // No `.part` files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("org-4").join("recordings"))
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| n.ends_with(".wav")), "{names:?}");
    }

    #[test]
    fn odd_length_mulaw_data_is_padded_to_an_even_chunk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rec =
            TestRec::new(&settings(RecordingFormat::Wav, 8000), dir.path(), 1, 1).expect("enabled");
        rec.push_caller(&[0x7F; 81]);
        let files = rec.finish().expect("written");
        let bytes = std::fs::read(&file_of(&files, TrackKind::User).path).expect("f");
        let wav = parse_wav(&bytes);
        assert_eq!(wav.data.len(), 81);
        assert_eq!(bytes.len() % 2, 0);
        assert_eq!(files[0].duration_ms, 10);
    }

    #[test]
    fn cleared_bot_audio_is_in_no_track() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rec =
            TestRec::new(&settings(RecordingFormat::Wav, 8000), dir.path(), 1, 2).expect("enabled");
        let loud = tone(4000);
        rec.push_caller(&[MULAW_SILENCE; 160]);
        for _ in 0..10 {
            rec.push_bot(&loud);
        }
        rec.push_caller(&[MULAW_SILENCE; 160]);
        rec.push_caller(&[MULAW_SILENCE; 160]);
        // Barge-in: 8 queued frames were never played.
        rec.bot_cleared();
        for _ in 0..5 {
            rec.push_caller(&[MULAW_SILENCE; 160]);
        }
        let files = rec.finish().expect("written");
        for kind in [TrackKind::Assistant, TrackKind::Mixed] {
            let wav = parse_wav(&std::fs::read(&file_of(&files, kind).path).expect("f"));
            assert_eq!(wav.data.len(), 8 * 160, "{kind:?}");
            let (before, rest) = wav.data.split_at(160);
            let (played, after) = rest.split_at(320);
            assert!(before.iter().all(|&b| b == MULAW_SILENCE), "{kind:?}");
            assert!(played.iter().all(|&b| b == loud[0]), "{kind:?}");
            assert!(
                after.iter().all(|&b| b == MULAW_SILENCE),
                "{kind:?} after clear"
            );
        }
    }

    #[test]
    fn mixed_track_sums_both_sides() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rec =
            TestRec::new(&settings(RecordingFormat::Wav, 8000), dir.path(), 1, 3).expect("enabled");
        rec.push_bot(&tone(3000));
        rec.push_caller(&tone(-1000));
        let files = rec.finish().expect("written");
        let wav = parse_wav(&std::fs::read(&file_of(&files, TrackKind::Mixed).path).expect("f"));
        let expected = mix::mix_sample(mulaw::encode(-1000), mulaw::encode(3000));
        assert!(wav.data.iter().all(|&b| b == expected));
    }

    #[test]
    fn excluded_side_stays_out_of_the_mix_and_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = RecordingSettings {
            record_assistant_audio: Some(false),
            ..settings(RecordingFormat::Wav, 8000)
        };
        let mut rec = TestRec::new(&s, dir.path(), 1, 3).expect("enabled");
        rec.push_bot(&tone(3000));
        rec.push_caller(&tone(-1000));
        let files = rec.finish().expect("written");
        let kinds: Vec<_> = files.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [TrackKind::User, TrackKind::Mixed]);
        let wav = parse_wav(&std::fs::read(&file_of(&files, TrackKind::Mixed).path).expect("f"));
        assert!(wav.data.iter().all(|&b| b == mulaw::encode(-1000)));
    }

    #[test]
    fn stereo_mix_puts_caller_left_and_assistant_right() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = RecordingSettings {
            channels: Some(2),
            ..settings(RecordingFormat::Wav, 8000)
        };
        let mut rec = TestRec::new(&s, dir.path(), 1, 4).expect("enabled");
        rec.push_bot(&tone(3000));
        rec.push_caller(&tone(-1000));
        rec.push_caller(&tone(-1000));
        let files = rec.finish().expect("written");
        let mixed = file_of(&files, TrackKind::Mixed);
        assert_eq!(mixed.channels, 2);
        assert_eq!(mixed.duration_ms, 40);
        let wav = parse_wav(&std::fs::read(&mixed.path).expect("f"));
        assert_eq!(
            (wav.channels, wav.block_align, wav.byte_rate),
            (2, 2, 16000)
        );
        assert_eq!(wav.fact_frames, Some(320));
        assert_eq!(wav.data.len(), 640);
        assert_eq!(wav.data[0], mulaw::encode(-1000));
        assert_eq!(wav.data[1], mulaw::encode(3000));
        // Second frame: the bot had nothing more queued.
        assert_eq!(wav.data[2 * 160], mulaw::encode(-1000));
        assert_eq!(wav.data[2 * 160 + 1], MULAW_SILENCE);
        assert_eq!(file_of(&files, TrackKind::User).channels, 1);
    }

    #[test]
    fn pcm_wav_at_16_khz_is_resampled_to_the_exact_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rec = TestRec::new(&settings(RecordingFormat::Wav, 16000), dir.path(), 1, 5)
            .expect("enabled");
        // 1 kHz sine, 1 s.
        let mut frame = [0u8; 160];
        for n in 0..50 {
            for (i, b) in frame.iter_mut().enumerate() {
                let t = (n * 160 + i) as f32 / 8000.0;
                let s = (t * 1000.0 * std::f32::consts::TAU).sin() * 8000.0;
                *b = mulaw::encode(s as i16);
            }
            rec.push_caller(&frame);
        }
        let files = rec.finish().expect("written");
        let user = file_of(&files, TrackKind::User);
        assert_eq!((user.sample_rate_hz, user.duration_ms), (16000, 1000));
        let wav = parse_wav(&std::fs::read(&user.path).expect("f"));
        assert_eq!(
            (
                wav.tag,
                wav.channels,
                wav.rate_hz,
                wav.byte_rate,
                wav.block_align,
                wav.bits
            ),
            (1, 1, 16000, 32000, 2, 16)
        );
        assert_eq!(wav.fact_frames, None);
        assert_eq!(wav.data.len(), 32000);
        let samples: Vec<i16> = wav
            .data
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        // The middle keeps the sine's energy (RMS of 8000 / sqrt 2) and is aligned: 1 kHz at
        // 16 kHz repeats every 16 samples.
        let mid = &samples[4000..12000];
        let rms =
            (mid.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / mid.len() as f64).sqrt();
        assert!((rms - 8000.0 / 2f64.sqrt()).abs() < 600.0, "rms {rms}");
        let period_diff = mid
            .iter()
            .zip(&mid[16..])
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .max()
            .unwrap_or(0);
        assert!(period_diff < 800, "{period_diff}");
    }

    #[cfg(not(feature = "mp3"))]
    #[test]
    fn mp3_without_the_feature_falls_back_to_wav() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rec =
            TestRec::new(&settings(RecordingFormat::Mp3, 8000), dir.path(), 1, 6).expect("enabled");
        rec.push_caller(&tone(100));
        let files = rec.finish().expect("written");
        assert_eq!(files.len(), 3);
        for f in &files {
            assert_eq!(f.format, RecordingFormat::Wav);
            assert_eq!(f.requested_format, RecordingFormat::Mp3);
            assert_eq!(f.path.extension().and_then(|e| e.to_str()), Some("wav"));
            parse_wav(&std::fs::read(&f.path).expect("f"));
            assert_eq!(f.to_new_recording("loc").format, "wav");
        }
    }

    #[cfg(feature = "mp3")]
    #[test]
    fn mp3_with_the_feature_writes_mp3_frames() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (rate, channels) in [(8000, 1), (16000, 2)] {
            let s = RecordingSettings {
                channels: Some(channels),
                ..settings(RecordingFormat::Mp3, rate)
            };
            let mut rec = TestRec::new(&s, dir.path(), 1, 6).expect("enabled");
            for _ in 0..100 {
                rec.push_bot(&tone(2000));
                rec.push_caller(&tone(-500));
            }
            let files = rec.finish().expect("written");
            for f in &files {
                assert_eq!(f.format, RecordingFormat::Mp3);
                assert_eq!((f.duration_ms, f.sample_rate_hz), (2000, rate));
                let bytes = std::fs::read(&f.path).expect("f");
                assert_eq!(f.size_bytes, bytes.len() as u64);
                // MPEG audio frame sync.
                assert_eq!(bytes[0], 0xFF);
                assert_eq!(bytes[1] & 0xE0, 0xE0);
                assert!(bytes.len() > 1000);
            }
        }
    }

    #[test]
    fn paths_cannot_escape_the_base_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in ["../up", "/abs/dir", "a/../../b", "..", "a/..", "\\\\srv\\x"] {
            let s = RecordingSettings {
                recordings_dir: Some(bad.to_owned()),
                ..RecordingSettings::default()
            };
            assert!(
                matches!(
                    RecordingPlan::new(&s, 1, 1),
                    Err(RecordingError::UnsafeDir { .. })
                ),
                "{bad}"
            );
            assert!(RecordingPlan::for_call(&s, 1, 1).is_none(), "{bad}");
        }
        let s = RecordingSettings {
            recordings_dir: Some("./calls/2026".to_owned()),
            ..settings(RecordingFormat::Wav, 8000)
        };
        let mut rec = TestRec::new(&s, dir.path(), 5, 77).expect("ok");
        rec.push_caller(&tone(0));
        let files = rec.finish().expect("written");
        let folder = dir.path().join("org-5").join("calls").join("2026");
        for f in &files {
            assert_eq!(f.path.parent(), Some(folder.as_path()));
        }
    }

    /// Each organisation's recordings live in its own folder, named by ids: two calls can never
    /// share a file, whatever their SIDs, and files and new folders are the owner's alone.
    #[test]
    fn files_are_named_by_ids_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut paths = Vec::new();
        for (org, call) in [(1, 10), (2, 10), (1, 11)] {
            let mut rec =
                TestRec::new(&settings(RecordingFormat::Wav, 8000), dir.path(), org, call)
                    .expect("enabled");
            rec.push_caller(&tone(0));
            let files = rec.finish().expect("written");
            assert_eq!(files.len(), 3);
            paths.extend(files.into_iter().map(|f| f.path));
        }
        let unique: std::collections::HashSet<_> = paths.iter().collect();
        assert_eq!(unique.len(), paths.len(), "{paths:?}");
        assert!(
            paths.contains(&dir.path().join("org-2/recordings/call-10-mixed.wav")),
            "{paths:?}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| {
                std::fs::metadata(p)
                    .map(|m| m.permissions().mode() & 0o777)
                    .expect("metadata")
            };
            for p in &paths {
                assert_eq!(mode(p), 0o600, "{}", p.display());
            }
            assert_eq!(mode(&dir.path().join("org-1")), 0o700);
            assert_eq!(mode(&dir.path().join("org-1/recordings")), 0o700);
        }
    }

    #[test]
    fn recording_stops_at_the_length_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rec = TestRec::new(&settings(RecordingFormat::Wav, 8000), dir.path(), 1, 8)
            .expect("enabled")
            .with_max_call_length_s(Some(1));
        for _ in 0..120 {
            rec.push_bot(&tone(10));
            rec.push_caller(&tone(20));
        }
        assert_eq!(rec.duration_ms(), 1000);
        assert!(rec.rec.bot_queue.is_empty());
        let files = rec.finish().expect("written");
        assert!(files.iter().all(|f| f.duration_ms == 1000));
    }

    #[test]
    fn new_recording_row_carries_the_file_facts() {
        let f = RecordingFile {
            path: PathBuf::from("/data/org-1/recordings/call-1-mixed.wav"),
            key: "org-1/recordings/call-1-mixed.wav".into(),
            kind: TrackKind::Mixed,
            format: RecordingFormat::Wav,
            requested_format: RecordingFormat::Mp3,
            duration_ms: 1234,
            size_bytes: 5678,
            sample_rate_hz: 8000,
            channels: 1,
            partial: true,
        };
        let row = f.to_new_recording("s3://calls/org-1/recordings/call-1-mixed.wav");
        assert_eq!(row.kind, "mixed");
        assert_eq!(row.format, "wav");
        assert_eq!(
            row.path_or_url,
            "s3://calls/org-1/recordings/call-1-mixed.wav"
        );
        assert_eq!(
            (
                row.duration_ms,
                row.size_bytes,
                row.sample_rate,
                row.partial
            ),
            (1234, 5678, 8000, true)
        );
    }

    #[test]
    fn empty_call_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec = TestRec::new(&RecordingSettings::default(), dir.path(), 1, 1).expect("enabled");
        assert!(rec.finish().expect("ok").is_empty());
    }

    /// A two-hour call (the longest recorded) with the bot talking all along: what the
    /// recorder holds never grows with the call, whether the writer keeps up or stops reading.
    #[test]
    fn the_recorder_holds_a_bounded_buffer_for_a_long_call() {
        let plan = RecordingPlan::new(&settings(RecordingFormat::Wav, 8000), 1, 1)
            .expect("safe")
            .expect("enabled");
        let (mut rec, mut rx) = CallRecorder::new(&plan, WRITER_QUEUE_BLOCKS);
        // The queue's growth rounds its capacity up to a power of two.
        let bound = 2 * BLOCK_SAMPLES + MAX_BOT_QUEUE_BYTES.next_power_of_two();
        let frames = MAX_RECORDING_S as usize * 50;
        let (caller, bot) = (tone(-200), tone(900));
        let mut received = 0usize;
        let mut max_held = 0usize;
        for n in 0..frames {
            // The runtime keeps ~300 ms of bot audio ahead of playback.
            rec.push_bot(&bot);
            if n < 15 {
                rec.push_bot(&bot);
            }
            rec.push_caller(&caller);
            max_held = max_held.max(rec.held_bytes());
            // A writer that keeps up for the first hour, then stops reading.
            if n < frames / 2 {
                while let Ok(block) = rx.try_recv() {
                    assert_eq!(block.start_sample, received);
                    assert_eq!(block.caller.len(), block.bot.len());
                    received += block.caller.len();
                }
            }
        }
        assert!(max_held <= bound, "held {max_held} bytes, bound {bound}");
        assert_eq!(rec.duration_ms(), u64::from(MAX_RECORDING_S) * 1000);
        // Everything up to the stall reached the writer; after it the queue filled and the rest
        // was dropped rather than held.
        assert_eq!(received, frames / 2 * 160);
        assert!(rec.dropped_blocks() > 0);
        let queued: usize = std::iter::from_fn(|| rx.try_recv().ok()).count();
        assert_eq!(queued, WRITER_QUEUE_BLOCKS);
    }

    /// Blocks the writer never got are silence on the timeline: the files keep the call's length
    /// and what follows stays in place.
    #[test]
    fn dropped_blocks_are_written_as_silence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plan = RecordingPlan::new(&settings(RecordingFormat::Wav, 8000), 1, 12)
            .expect("safe")
            .expect("enabled");
        let (mut rec, mut rx) = CallRecorder::new(&plan, 1);
        // 3 s; the writer reads nothing until the end: blocks 2 and 3 do not fit the queue.
        for _ in 0..150 {
            rec.push_caller(&tone(1000));
        }
        assert_eq!(rec.dropped_blocks(), 2);
        let first = rx.try_recv().expect("first block");
        // Half a second more, read in time.
        for _ in 0..25 {
            rec.push_caller(&tone(2000));
        }
        rec.finish();
        let last = rx.try_recv().expect("last block");
        let mut writer = SpoolWriter::new(plan, dir.path());
        writer.write(&first).expect("write");
        writer.write(&last).expect("write");
        let files = writer.finish().expect("finish");
        let user = file_of(&files, TrackKind::User);
        assert_eq!(user.duration_ms, 3500);
        let wav = parse_wav(&std::fs::read(&user.path).expect("f"));
        assert!(wav.data[..8000].iter().all(|&b| b == mulaw::encode(1000)));
        assert!(wav.data[8000..24_000].iter().all(|&b| b == MULAW_SILENCE));
        assert!(wav.data[24_000..].iter().all(|&b| b == mulaw::encode(2000)));
    }

    /// A process that dies mid-call leaves spool files; the next start finds them and
    /// finalises each as a playable, partial µ-law WAV of what was written.
    #[test]
    fn a_spool_left_by_a_crash_is_recovered_as_a_partial_recording() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = RecordingSettings {
            channels: Some(2),
            recordings_dir: Some("calls/2026".into()),
            ..settings(RecordingFormat::Mp3, 16000)
        };
        let plan = RecordingPlan::new(&s, 7, 42)
            .expect("safe")
            .expect("enabled");
        let (mut rec, mut rx) = CallRecorder::new(&plan, 64);
        for _ in 0..125 {
            rec.push_bot(&tone(3000));
            rec.push_caller(&tone(-1000));
        }
        let mut writer = SpoolWriter::new(plan, dir.path());
        while let Ok(block) = rx.try_recv() {
            writer.write(&block).expect("write");
        }
        // The crash: neither the recorder nor the writer finishes.
        std::mem::forget(writer);
        std::mem::forget(rec);

        let mut leftovers = find_leftover_spools(dir.path());
        leftovers.sort_by_key(|l| l.kind.as_str());
        let kinds: Vec<_> = leftovers
            .iter()
            .map(|l| (l.org_id, l.call_id, l.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                (7, 42, TrackKind::Assistant),
                (7, 42, TrackKind::Mixed),
                (7, 42, TrackKind::User)
            ]
        );
        for spool in &leftovers {
            let file = recover_spool(spool, dir.path())
                .expect("recovered")
                .expect("has audio");
            assert!(file.partial);
            assert_eq!(file.format, RecordingFormat::Wav);
            assert_eq!(file.sample_rate_hz, 8000);
            // Two whole blocks had been written; the half block in the recorder was lost.
            assert_eq!(file.duration_ms, 2000);
            assert_eq!(
                file.key,
                format!("org-7/calls/2026/call-42-{}.wav", spool.kind.as_str())
            );
            assert_eq!(file.path, dir.path().join(&file.key));
            let wav = parse_wav(&std::fs::read(&file.path).expect("f"));
            assert_eq!(wav.tag, 7);
            assert_eq!(wav.fact_frames, Some(16_000));
            match spool.kind {
                TrackKind::Mixed => {
                    assert_eq!((wav.channels, wav.data.len()), (2, 32_000));
                    assert_eq!(&wav.data[..2], &[mulaw::encode(-1000), mulaw::encode(3000)]);
                }
                TrackKind::User => assert!(wav.data.iter().all(|&b| b == mulaw::encode(-1000))),
                TrackKind::Assistant => {
                    assert!(wav.data.iter().all(|&b| b == mulaw::encode(3000)))
                }
            }
        }
        assert!(find_leftover_spools(dir.path()).is_empty());
    }
}
