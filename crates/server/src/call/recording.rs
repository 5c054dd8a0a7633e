//! Call audio recording: the caller's track, the assistant's track and their mix, written as
//! WAV (or MP3 with the `mp3` cargo feature) when the call ends.
//!
//! During the call [`CallRecorder`] only appends bytes: every inbound 20 ms caller frame (8 kHz
//! µ-law, 160 bytes) and every bot frame sent to Twilio. The caller's frames are the clock, the
//! same way [`switchboard_core::audio::mix::DuplexMixer`] works: bot audio is queued when it is
//! sent and is laid onto the timeline as caller audio arrives, so it lands where the caller heard
//! it; a barge-in `clear` ([`CallRecorder::bot_cleared`]) drops bot audio that was queued but never
//! played, so it appears in no track. All tracks therefore have the caller's length and line up
//! sample for sample.
//!
//! Memory: µ-law is one byte per sample, 8000 bytes per second per track (a 10-minute call is
//! about 4.8 MB per track; two tracks are kept, caller and played bot audio). Buffers grow in
//! 64 000-byte chunks (8 s), one allocation per 8 s per track, never a large copy. A recording
//! stops growing at the assistant's `max_call_length` or [`MAX_RECORDING_S`] (2 hours, 57.6 MB per
//! track), whichever is shorter; audio after that is not recorded and the log says so.
//!
//! Decoding, mixing, resampling, encoding and file I/O all happen in [`CallRecorder::finish`],
//! which is synchronous: the runtime runs it in `spawn_blocking` after the call.
//!
//! Files: `<base_dir>/org-<organisation id>/<recordings_dir>/call-<call id>-<track>.<ext>`,
//! named by database ids only (never by a caller-supplied string such as the call SID, which two
//! organisations could make sanitise to the same name), written to a `.part` file and renamed
//! when complete. Folders are created 0700 and files 0600 (Unix): recordings are the owner's
//! alone. Formats:
//! - `wav` at 8000 Hz: G.711 µ-law WAV (format tag 7), the call's audio as it was on the wire.
//! - `wav` at any other rate: 16-bit PCM WAV, decoded and resampled.
//! - `mp3`: only when built with the `mp3` feature (LAME, LGPL-3.0, linked statically, so off by
//!   default); without it an `mp3` request is written as WAV, logged, and reported in
//!   [`RecordingFile::requested_format`].
//!
//! Channels: user and assistant tracks are mono; the mixed track is mono (summed) or, with
//! `channels: 2`, stereo with the caller on the left and the assistant on the right.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Component, Path, PathBuf};

use switchboard_assistant::{RecordingFormat, RecordingSettings};
use switchboard_core::audio::resample::Resampler;
use switchboard_core::audio::{AudioError, MULAW_SILENCE, SAMPLE_RATE_HZ, mix, mulaw};
use switchboard_store::NewRecording;

/// Longest recording kept, in seconds (2 hours), whatever `max_call_length` says: bounds the
/// memory of one call's recording (57.6 MB per µ-law track).
pub const MAX_RECORDING_S: u32 = 2 * 60 * 60;

/// Directory used when `recordings_dir` is unset or empty, relative to the base directory.
pub const DEFAULT_RECORDINGS_DIR: &str = "recordings";

/// Bytes per growth step of a track buffer: 8 s of 8 kHz µ-law.
const CHUNK_BYTES: usize = 64_000;

/// Samples per block when rendering a track at `finish` (1 s at 8 kHz; divides `CHUNK_BYTES`).
const BLOCK_SAMPLES: usize = 8000;

/// Most bot audio waiting to be laid onto the timeline, in bytes (60 s). Bot audio is paced with
/// a lead of a few hundred ms, so this only bounds a runtime that sends without a caller clock.
const MAX_BOT_QUEUE_BYTES: usize = 60 * SAMPLE_RATE_HZ as usize;

/// Capacity of the file writer's buffer, in bytes.
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
    /// The name used in file names and in the store's `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Mixed => "mixed",
        }
    }
}

/// The lowercase name of a recording format, as in file extensions and the store.
pub fn format_str(format: RecordingFormat) -> &'static str {
    match format {
        RecordingFormat::Mp3 => "mp3",
        RecordingFormat::Wav => "wav",
    }
}

/// One file written by [`CallRecorder::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingFile {
    /// Where the file is (under the base directory given to [`CallRecorder::new`]).
    pub path: PathBuf,
    /// Which audio it holds.
    pub kind: TrackKind,
    /// The format actually written.
    pub format: RecordingFormat,
    /// The format the assistant asked for; differs from `format` when `mp3` was asked for and
    /// the server was built without the `mp3` feature.
    pub requested_format: RecordingFormat,
    /// Length of the audio, ms.
    pub duration_ms: u64,
    /// Size of the file, bytes.
    pub size_bytes: u64,
    /// Sample rate of the file, Hz.
    pub sample_rate_hz: u32,
    /// Channels in the file: 1, or 2 for a stereo mixed track.
    pub channels: u16,
}

impl RecordingFile {
    /// The row to insert with `Store::add_recording` for this file.
    pub fn to_new_recording(&self) -> NewRecording {
        NewRecording {
            kind: self.kind.as_str().to_owned(),
            format: format_str(self.format).to_owned(),
            path_or_url: self.path.to_string_lossy().into_owned(),
            duration_ms: i64::try_from(self.duration_ms).unwrap_or(i64::MAX),
            size_bytes: i64::try_from(self.size_bytes).unwrap_or(i64::MAX),
            sample_rate: i64::from(self.sample_rate_hz),
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
}

/// A growable byte buffer that grows by fixed chunks instead of doubling, so appending never
/// copies what is already recorded and never holds twice the memory.
#[derive(Debug, Default)]
struct ChunkedBytes {
    chunks: Vec<Vec<u8>>,
    len: usize,
}

impl ChunkedBytes {
    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let need_chunk = self.chunks.last().is_none_or(|c| c.len() == CHUNK_BYTES);
            if need_chunk {
                self.chunks.push(Vec::with_capacity(CHUNK_BYTES));
            }
            let Some(chunk) = self.chunks.last_mut() else {
                return;
            };
            let n = bytes.len().min(CHUNK_BYTES - chunk.len());
            let (now, rest) = bytes.split_at(n);
            chunk.extend_from_slice(now);
            self.len += n;
            bytes = rest;
        }
    }

    fn push_fill(&mut self, byte: u8, mut count: usize) {
        let fill = [byte; 160];
        while count > 0 {
            let n = count.min(fill.len());
            self.push(&fill[..n]);
            count -= n;
        }
    }

    /// Copies `out.len()` bytes from `start` into `out`; bytes past the end read as silence.
    fn read_into(&self, mut start: usize, out: &mut [u8]) {
        let mut filled = 0;
        while filled < out.len() {
            let chunk = self.chunks.get(start / CHUNK_BYTES);
            let src = chunk
                .and_then(|c| c.get(start % CHUNK_BYTES..))
                .unwrap_or(&[]);
            if src.is_empty() {
                if let Some(rest) = out.get_mut(filled..) {
                    rest.fill(MULAW_SILENCE);
                }
                return;
            }
            let n = src.len().min(out.len() - filled);
            if let (Some(dst), Some(src)) = (out.get_mut(filled..filled + n), src.get(..n)) {
                dst.copy_from_slice(src);
            }
            filled += n;
            start += n;
        }
    }
}

/// Records one call's audio in memory and writes it to files when the call ends.
///
/// ```no_run
/// # use std::path::Path;
/// # use switchboard_server::call::recording::CallRecorder;
/// # let settings = switchboard_assistant::RecordingSettings::default();
/// if let Some(mut rec) = CallRecorder::new(&settings, Path::new("/var/lib/switchboard"), 3, 7) {
///     rec.push_bot(&[0xFF; 160]); // a frame sent to Twilio
///     rec.push_caller(&[0xFF; 160]); // a frame from Twilio: the clock
///     rec.bot_cleared(); // barge-in: what was queued is never recorded
///     let _files = rec.finish(); // in spawn_blocking, after the call
/// }
/// ```
#[derive(Debug)]
pub struct CallRecorder {
    call_id: i64,
    /// `<base_dir>/org-<id>/<recordings_dir>`.
    dir: PathBuf,
    requested_format: RecordingFormat,
    sample_rate_hz: u32,
    stereo_mix: bool,
    user_file: bool,
    assistant_file: bool,
    mixed_file: bool,
    database_records: bool,
    /// Caller audio on the caller clock; `None` when the caller is not recorded.
    caller: Option<ChunkedBytes>,
    /// Bot audio as played, on the caller clock; `None` when the assistant is not recorded.
    bot: Option<ChunkedBytes>,
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
    /// Scratch for one frame of played bot audio.
    frame_scratch: Vec<u8>,
}

impl CallRecorder {
    /// A recorder for one call, or `None` when recording is disabled (`enabled: false`, or no
    /// track selected) or `recordings_dir` is unsafe (logged; see [`CallRecorder::try_new`]).
    ///
    /// Tracks: caller when `record_user_audio` and `record_user_only_track` are not false;
    /// assistant when `record_assistant_audio` is not false; mixed when `record_mixed_audio` is
    /// not false. `record_user_audio: false` / `record_assistant_audio: false` also keep that
    /// side out of the mix. `record_user_only_track: null` (the organisation's setting) records
    /// the caller track; the caller of this function may resolve it first.
    pub fn new(
        settings: &RecordingSettings,
        base_dir: &Path,
        org_id: i64,
        call_id: i64,
    ) -> Option<Self> {
        match Self::try_new(settings, base_dir, org_id, call_id) {
            Ok(rec) => rec,
            Err(e) => {
                tracing::error!(call_id, error = %e, "call recording disabled");
                None
            }
        }
    }

    /// Like [`CallRecorder::new`], but an unsafe `recordings_dir` is an error.
    pub fn try_new(
        settings: &RecordingSettings,
        base_dir: &Path,
        org_id: i64,
        call_id: i64,
    ) -> Result<Option<Self>, RecordingError> {
        if !settings.enabled {
            return Ok(None);
        }
        let dir = base_dir
            .join(format!("org-{org_id}"))
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
            dir,
            requested_format: settings.format.unwrap_or(RecordingFormat::Mp3),
            sample_rate_hz,
            stereo_mix: settings.channels == Some(2),
            user_file,
            assistant_file,
            mixed_file,
            database_records: settings.create_database_records != Some(false),
            caller: with_user.then(ChunkedBytes::default),
            bot: with_bot.then(ChunkedBytes::default),
            bot_queue: VecDeque::with_capacity(SAMPLE_RATE_HZ as usize),
            samples: 0,
            max_samples: MAX_RECORDING_S as usize * SAMPLE_RATE_HZ as usize,
            dropped_samples: 0,
            dropped_bot_bytes: 0,
            frame_scratch: Vec::with_capacity(160),
        }))
    }

    /// Caps the recording at the assistant's `max_call_length` (seconds; `None` = no cap beyond
    /// [`MAX_RECORDING_S`]).
    pub fn with_max_call_length_s(mut self, max_call_length_s: Option<u32>) -> Self {
        let secs = max_call_length_s.map_or(MAX_RECORDING_S, |s| s.clamp(1, MAX_RECORDING_S));
        self.max_samples = secs as usize * SAMPLE_RATE_HZ as usize;
        self
    }

    /// Our call record id, for the rows of [`RecordingFile::to_new_recording`].
    pub fn call_id(&self) -> i64 {
        self.call_id
    }

    /// Whether the assistant wants recording rows in the database (`create_database_records`).
    pub fn creates_database_records(&self) -> bool {
        self.database_records
    }

    /// Length recorded so far on the caller clock, ms.
    pub fn duration_ms(&self) -> u64 {
        self.samples as u64 * 1000 / u64::from(SAMPLE_RATE_HZ)
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
        if n == 0 {
            return;
        }
        let frame = frame.get(..n).unwrap_or(frame);
        if let Some(caller) = self.caller.as_mut() {
            caller.push(frame);
        }
        let from_queue = n.min(self.bot_queue.len());
        if let Some(bot) = self.bot.as_mut() {
            self.frame_scratch.clear();
            self.frame_scratch
                .extend(self.bot_queue.drain(..from_queue));
            bot.push(&self.frame_scratch);
            bot.push_fill(MULAW_SILENCE, n - from_queue);
        } else {
            self.bot_queue.drain(..from_queue);
        }
        self.samples += n;
    }

    /// One bot frame sent to Twilio (8 kHz µ-law, 20 ms); it plays from the next caller frame.
    pub fn push_bot(&mut self, frame: &[u8; 160]) {
        if self.bot.is_none() || self.samples >= self.max_samples {
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

    /// Writes the selected tracks and returns one [`RecordingFile`] per file written.
    ///
    /// Synchronous file I/O, decoding and encoding: run it in `spawn_blocking`. A call with no
    /// caller audio at all writes nothing and returns an empty list.
    pub fn finish(self) -> Result<Vec<RecordingFile>, RecordingError> {
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
        if self.samples == 0 {
            return Ok(Vec::new());
        }
        let format = effective_format(self.requested_format);
        if format != self.requested_format {
            tracing::warn!(
                call_id = self.call_id,
                "mp3 recording requested but this server was built without the `mp3` feature; writing WAV"
            );
        }
        create_private_dir_all(&self.dir).map_err(|source| RecordingError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut files = Vec::new();
        let tracks = [
            (TrackKind::User, self.user_file),
            (TrackKind::Assistant, self.assistant_file),
            (TrackKind::Mixed, self.mixed_file),
        ];
        for (kind, wanted) in tracks {
            if wanted {
                files.push(self.write_track(kind, format)?);
            }
        }
        Ok(files)
    }

    fn write_track(
        &self,
        kind: TrackKind,
        format: RecordingFormat,
    ) -> Result<RecordingFile, RecordingError> {
        let channels: u16 = if kind == TrackKind::Mixed && self.stereo_mix {
            2
        } else {
            1
        };
        let ext = format_str(format);
        let name = format!("call-{}-{}.{ext}", self.call_id, kind.as_str());
        let path = self.dir.join(&name);
        let part = self.dir.join(format!("{name}.part"));
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RecordingError::Io { path, source }
        };
        let file = create_private_file(&part).map_err(io_err(&part))?;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
        let result = match format {
            RecordingFormat::Wav => self.write_wav(kind, channels, &mut out),
            RecordingFormat::Mp3 => self.write_mp3(kind, channels, &mut out),
        };
        let result = result.and_then(|()| {
            out.flush().map_err(io_err(&part))?;
            out.get_ref().sync_all().map_err(io_err(&part))
        });
        drop(out);
        if let Err(e) = result {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
        std::fs::rename(&part, &path).map_err(io_err(&path))?;
        let size_bytes = std::fs::metadata(&path).map_err(io_err(&path))?.len();
        Ok(RecordingFile {
            path,
            kind,
            format,
            requested_format: self.requested_format,
            duration_ms: self.duration_ms(),
            size_bytes,
            sample_rate_hz: self.sample_rate_hz,
            channels,
        })
    }

    /// WAV at the call's rate keeps the µ-law bytes; any other rate is 16-bit PCM.
    fn mulaw_wav(&self) -> bool {
        self.sample_rate_hz == SAMPLE_RATE_HZ
    }

    /// Number of output frames (samples per channel) at `rate_hz` for the recorded length.
    fn frames_at(&self, rate_hz: u32) -> u64 {
        self.samples as u64 * u64::from(rate_hz) / u64::from(SAMPLE_RATE_HZ)
    }

    /// Calls `f` with consecutive blocks of a track's µ-law audio at 8 kHz, one slice per
    /// channel, until the recorded length is covered.
    fn for_each_block(
        &self,
        kind: TrackKind,
        channels: u16,
        mut f: impl FnMut(&[&[u8]]) -> Result<(), RecordingError>,
    ) -> Result<(), RecordingError> {
        let mut a = vec![MULAW_SILENCE; BLOCK_SAMPLES];
        let mut b = vec![MULAW_SILENCE; BLOCK_SAMPLES];
        let mut start = 0;
        while start < self.samples {
            let n = (self.samples - start).min(BLOCK_SAMPLES);
            let (a, b) = (&mut a[..n], &mut b[..n]);
            read_track(self.caller.as_ref(), start, a);
            read_track(self.bot.as_ref(), start, b);
            match (kind, channels) {
                (TrackKind::User, _) => f(&[a])?,
                (TrackKind::Assistant, _) => f(&[b])?,
                (TrackKind::Mixed, 2) => f(&[a, b])?,
                (TrackKind::Mixed, _) => {
                    for (x, &y) in a.iter_mut().zip(b.iter()) {
                        *x = mix::mix_sample(*x, y);
                    }
                    f(&[a])?
                }
            }
            start += n;
        }
        Ok(())
    }

    fn write_wav(
        &self,
        kind: TrackKind,
        channels: u16,
        out: &mut impl Write,
    ) -> Result<(), RecordingError> {
        let werr = |source| RecordingError::Io {
            path: self.dir.clone(),
            source,
        };
        if self.mulaw_wav() {
            let frames = self.samples as u64;
            let header = wav_header(WavEncoding::Mulaw, channels, SAMPLE_RATE_HZ, frames)?;
            out.write_all(&header).map_err(werr)?;
            let mut interleaved = Vec::with_capacity(BLOCK_SAMPLES * 2);
            self.for_each_block(kind, channels, |chans| {
                let bytes: &[u8] = match chans {
                    [one] => one,
                    [l, r] => {
                        interleaved.clear();
                        for (&x, &y) in l.iter().zip(r.iter()) {
                            interleaved.push(x);
                            interleaved.push(y);
                        }
                        &interleaved
                    }
                    _ => &[],
                };
                out.write_all(bytes).map_err(werr)
            })?;
            let data_bytes = frames * u64::from(channels);
            if data_bytes % 2 == 1 {
                out.write_all(&[0]).map_err(werr)?;
            }
            return Ok(());
        }
        let frames = self.frames_at(self.sample_rate_hz);
        let header = wav_header(WavEncoding::Pcm16, channels, self.sample_rate_hz, frames)?;
        out.write_all(&header).map_err(werr)?;
        let mut pipeline = PcmPipeline::new(channels, self.sample_rate_hz, frames)?;
        let mut bytes = Vec::with_capacity(WRITE_BUFFER_BYTES);
        let mut emit = |pcm: &[i16]| {
            bytes.clear();
            for s in pcm {
                bytes.extend_from_slice(&s.to_le_bytes());
            }
            out.write_all(&bytes).map_err(werr)
        };
        self.for_each_block(kind, channels, |chans| pipeline.push(chans, &mut emit))?;
        pipeline.finish(&mut emit)
    }

    #[cfg(feature = "mp3")]
    fn write_mp3(
        &self,
        kind: TrackKind,
        channels: u16,
        out: &mut impl Write,
    ) -> Result<(), RecordingError> {
        let werr = |source| RecordingError::Io {
            path: self.dir.clone(),
            source,
        };
        let mut encoder = mp3::Mp3Writer::new(channels, self.sample_rate_hz)?;
        let frames = self.frames_at(self.sample_rate_hz);
        let mut pipeline = PcmPipeline::new(channels, self.sample_rate_hz, frames)?;
        let mut emit = |pcm: &[i16]| {
            let bytes = encoder.encode(pcm)?;
            out.write_all(bytes).map_err(werr)
        };
        self.for_each_block(kind, channels, |chans| pipeline.push(chans, &mut emit))?;
        pipeline.finish(&mut emit)?;
        let tail = encoder.flush()?;
        out.write_all(tail).map_err(werr)
    }

    #[cfg(not(feature = "mp3"))]
    fn write_mp3(
        &self,
        _kind: TrackKind,
        _channels: u16,
        _out: &mut impl Write,
    ) -> Result<(), RecordingError> {
        // `effective_format` never picks MP3 without the feature.
        Err(RecordingError::Mp3(
            "this server was built without the `mp3` feature".to_owned(),
        ))
    }
}

/// The format written for a requested one: MP3 needs the `mp3` feature, otherwise WAV.
pub fn effective_format(requested: RecordingFormat) -> RecordingFormat {
    match requested {
        RecordingFormat::Mp3 if cfg!(feature = "mp3") => RecordingFormat::Mp3,
        RecordingFormat::Mp3 | RecordingFormat::Wav => RecordingFormat::Wav,
    }
}

fn read_track(track: Option<&ChunkedBytes>, start: usize, out: &mut [u8]) {
    match track {
        Some(t) => t.read_into(start, out),
        None => out.fill(MULAW_SILENCE),
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
fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates (or truncates a leftover of) `path` for writing, readable by the owner only (0600 on
/// Unix).
fn create_private_file(path: &Path) -> std::io::Result<File> {
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
        assert!(CallRecorder::new(&off, dir.path(), 1, 1).is_none());
        let none = RecordingSettings {
            record_user_audio: Some(false),
            record_assistant_audio: Some(false),
            ..RecordingSettings::default()
        };
        assert!(CallRecorder::new(&none, dir.path(), 1, 1).is_none());
        assert!(CallRecorder::new(&RecordingSettings::default(), dir.path(), 1, 1).is_some());
    }

    #[test]
    fn mulaw_wav_header_and_durations_match_frames_pushed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rec = CallRecorder::new(&settings(RecordingFormat::Wav, 8000), dir.path(), 4, 9)
            .expect("enabled");
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
        let mut rec = CallRecorder::new(&settings(RecordingFormat::Wav, 8000), dir.path(), 1, 1)
            .expect("enabled");
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
        let mut rec = CallRecorder::new(&settings(RecordingFormat::Wav, 8000), dir.path(), 1, 2)
            .expect("enabled");
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
        let mut rec = CallRecorder::new(&settings(RecordingFormat::Wav, 8000), dir.path(), 1, 3)
            .expect("enabled");
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
        let mut rec = CallRecorder::new(&s, dir.path(), 1, 3).expect("enabled");
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
        let mut rec = CallRecorder::new(&s, dir.path(), 1, 4).expect("enabled");
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
        let mut rec = CallRecorder::new(&settings(RecordingFormat::Wav, 16000), dir.path(), 1, 5)
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
        let mut rec = CallRecorder::new(&settings(RecordingFormat::Mp3, 8000), dir.path(), 1, 6)
            .expect("enabled");
        rec.push_caller(&tone(100));
        let files = rec.finish().expect("written");
        assert_eq!(files.len(), 3);
        for f in &files {
            assert_eq!(f.format, RecordingFormat::Wav);
            assert_eq!(f.requested_format, RecordingFormat::Mp3);
            assert_eq!(f.path.extension().and_then(|e| e.to_str()), Some("wav"));
            parse_wav(&std::fs::read(&f.path).expect("f"));
            assert_eq!(f.to_new_recording().format, "wav");
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
            let mut rec = CallRecorder::new(&s, dir.path(), 1, 6).expect("enabled");
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
                    CallRecorder::try_new(&s, dir.path(), 1, 1),
                    Err(RecordingError::UnsafeDir { .. })
                ),
                "{bad}"
            );
            assert!(CallRecorder::new(&s, dir.path(), 1, 1).is_none(), "{bad}");
        }
        let s = RecordingSettings {
            recordings_dir: Some("./calls/2026".to_owned()),
            ..settings(RecordingFormat::Wav, 8000)
        };
        let mut rec = CallRecorder::new(&s, dir.path(), 5, 77).expect("ok");
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
                CallRecorder::new(&settings(RecordingFormat::Wav, 8000), dir.path(), org, call)
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
        let mut rec = CallRecorder::new(&settings(RecordingFormat::Wav, 8000), dir.path(), 1, 8)
            .expect("enabled")
            .with_max_call_length_s(Some(1));
        for _ in 0..120 {
            rec.push_bot(&tone(10));
            rec.push_caller(&tone(20));
        }
        assert_eq!(rec.duration_ms(), 1000);
        assert!(rec.bot_queue.is_empty());
        let files = rec.finish().expect("written");
        assert!(files.iter().all(|f| f.duration_ms == 1000));
    }

    #[test]
    fn new_recording_row_carries_the_file_facts() {
        let f = RecordingFile {
            path: PathBuf::from("/data/recordings/CA1-mixed.wav"),
            kind: TrackKind::Mixed,
            format: RecordingFormat::Wav,
            requested_format: RecordingFormat::Mp3,
            duration_ms: 1234,
            size_bytes: 5678,
            sample_rate_hz: 8000,
            channels: 1,
        };
        let row = f.to_new_recording();
        assert_eq!(row.kind, "mixed");
        assert_eq!(row.format, "wav");
        assert_eq!(row.path_or_url, "/data/recordings/CA1-mixed.wav");
        assert_eq!(
            (row.duration_ms, row.size_bytes, row.sample_rate),
            (1234, 5678, 8000)
        );
    }

    #[test]
    fn empty_call_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rec =
            CallRecorder::new(&RecordingSettings::default(), dir.path(), 1, 1).expect("enabled");
        assert!(rec.finish().expect("ok").is_empty());
    }

    #[test]
    fn chunked_bytes_cross_chunk_boundaries() {
        let mut c = ChunkedBytes::default();
        let data: Vec<u8> = (0..CHUNK_BYTES + 500).map(|i| (i % 251) as u8).collect();
        for part in data.chunks(333) {
            c.push(part);
        }
        assert_eq!(c.len, data.len());
        assert_eq!(c.chunks.len(), 2);
        let mut out = vec![0u8; 1000];
        c.read_into(CHUNK_BYTES - 300, &mut out);
        assert_eq!(&out[..800], &data[CHUNK_BYTES - 300..]);
        assert!(out[800..].iter().all(|&b| b == MULAW_SILENCE));
    }
}
