//! Background sound (`tts_settings.background_sound`): decoding, the shared cache, and loading a
//! call's sound from storage or from `sound_url`.
//!
//! A sound is an uploaded file (`POST /api/v1/assistants/{id}/background-sound`, kept through
//! the recordings' storage under `org-<id>/background-sounds/…`, named by the record's
//! `storage_key`) or a `sound_url` fetched once through the guarded tenant HTTP client (http(s)
//! only, public addresses unless `outbound.allow_hosts` says otherwise, at most
//! `background_sound.max_bytes` within `background_sound.fetch_timeout_ms`: [`SoundLimits`]).
//! It is decoded in process by MIT/Apache-2.0 decoders (hound: WAV, lewton: OGG/Vorbis,
//! claxon: FLAC, nanomp3: MP3), mixed down to mono, resampled once to 8 kHz, its loop seam
//! smoothed ([`smooth_loop_seam`]) and kept as 16-bit PCM in a [`SoundCache`] shared by every
//! call, keyed by storage key or URL, with one copy per content hash, bounded in bytes.
//!
//! Decoding runs on the blocking pool, never on a call task; a call whose sound fails to load
//! goes on without it (the runtime logs a warning with the call id). A failure is remembered
//! for `background_sound.failure_retry_s`: calls meanwhile get [`SoundError::RecentFailure`]
//! at once instead of fetching a broken `sound_url` again.

use std::collections::{HashMap, VecDeque};
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use sha2::{Digest, Sha256};
use switchboard_assistant::BackgroundSound;
use switchboard_core::audio::AudioError;
use switchboard_core::audio::background::{resample_to_8k, smooth_loop_seam};
use tokio::sync::OnceCell;

use crate::config::BackgroundSoundSettings;
use crate::recording_storage::{RecordingStorage, StorageError};
use crate::state::AppState;

/// Folder (under an organisation's prefix) of uploaded background sounds.
pub const STORAGE_DIR: &str = "background-sounds";
/// Length of the crossfade that joins a looped sound's end to its start, ms: long enough that
/// the seam does not click, short enough not to be heard as a fade.
pub const LOOP_CROSSFADE_MS: usize = 15;

/// The limits of background sounds, from `[background_sound]` (see `config/default.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoundLimits {
    /// Largest sound file accepted, uploaded or fetched, bytes.
    pub max_bytes: usize,
    /// Longest a `sound_url` download may take, whole.
    pub fetch_timeout: Duration,
    /// Memory the shared cache may hold, bytes of 8 kHz 16-bit PCM.
    pub cache_max_bytes: usize,
    /// How long a failed load is remembered (not tried again); zero = not remembered.
    pub failure_retry: Duration,
    /// Longest sound accepted, seconds (a longer file would only cost memory: it loops anyway).
    pub max_duration_s: u64,
}

impl From<&BackgroundSoundSettings> for SoundLimits {
    fn from(s: &BackgroundSoundSettings) -> Self {
        Self {
            max_bytes: s.max_bytes,
            fetch_timeout: Duration::from_millis(s.fetch_timeout_ms),
            cache_max_bytes: s.cache_max_bytes,
            failure_retry: Duration::from_secs(s.failure_retry_s),
            max_duration_s: s.max_duration_s,
        }
    }
}

/// The container/codec of a sound file, recognised by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoundFormat {
    /// RIFF/WAVE, integer or float PCM.
    Wav,
    /// MPEG-1/2 audio layer III (also layers I/II).
    Mp3,
    /// Vorbis in an Ogg container.
    OggVorbis,
    /// Free Lossless Audio Codec.
    Flac,
}

impl SoundFormat {
    /// The format `bytes` start like, if any of the four.
    pub fn sniff(bytes: &[u8]) -> Option<SoundFormat> {
        match bytes {
            [
                b'R',
                b'I',
                b'F',
                b'F',
                _,
                _,
                _,
                _,
                b'W',
                b'A',
                b'V',
                b'E',
                ..,
            ] => Some(Self::Wav),
            [b'O', b'g', b'g', b'S', ..] => Some(Self::OggVorbis),
            [b'f', b'L', b'a', b'C', ..] => Some(Self::Flac),
            [b'I', b'D', b'3', ..] => Some(Self::Mp3),
            [0xFF, b, ..] if b & 0xE0 == 0xE0 => Some(Self::Mp3),
            _ => None,
        }
    }

    /// File extension of stored sounds of this format.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Wav => "wav",
            Self::Mp3 => "mp3",
            Self::OggVorbis => "ogg",
            Self::Flac => "flac",
        }
    }

    /// Name shown in API answers and errors.
    pub fn name(self) -> &'static str {
        match self {
            Self::Wav => "WAV",
            Self::Mp3 => "MP3",
            Self::OggVorbis => "OGG/Vorbis",
            Self::Flac => "FLAC",
        }
    }
}

/// Why a background sound could not be accepted or loaded.
#[derive(Debug, thiserror::Error)]
pub enum SoundError {
    /// The bytes are none of the accepted formats.
    #[error("not a WAV, MP3, OGG/Vorbis or FLAC file")]
    UnknownFormat,
    /// The file claims a format but its audio does not decode.
    #[error("{format} file does not decode: {reason}")]
    Undecodable {
        /// The format it claims.
        format: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// The file decodes to no audio.
    #[error("the file holds no audio")]
    Empty,
    /// Longer than `background_sound.max_duration_s`.
    #[error("longer than {limit_s} s")]
    TooLong {
        /// The limit, seconds.
        limit_s: u64,
    },
    /// More than `background_sound.max_bytes`.
    #[error("larger than {limit_bytes} bytes")]
    TooLarge {
        /// The limit, bytes.
        limit_bytes: usize,
    },
    /// A sample rate the resampler cannot convert from.
    #[error(transparent)]
    Rate(#[from] AudioError),
    /// `sound_url` could not be fetched (network, HTTP status, timeout, or refused by the
    /// outbound policy).
    #[error("sound_url: {0}")]
    Fetch(String),
    /// The stored file could not be read.
    #[error("stored sound: {0}")]
    Storage(#[from] StorageError),
    /// The record's `storage_key` is not one of this organisation's uploaded sounds.
    #[error("storage_key is not a background sound of this organisation")]
    ForeignKey,
    /// The decoder task panicked or was cancelled.
    #[error("decoder task failed")]
    Task,
    /// The same source failed to load less than `background_sound.failure_retry_s` ago and is
    /// not tried again yet (that failure was logged when it happened).
    #[error("failed to load {ago_s} s ago, not tried again for {retry_in_s} s: {reason}")]
    RecentFailure {
        /// What the failed load said.
        reason: String,
        /// Seconds since it failed.
        ago_s: u64,
        /// Seconds until a call tries again.
        retry_in_s: u64,
    },
}

/// A decoded sound, 8 kHz mono, and what it was.
#[derive(Debug, Clone)]
pub struct DecodedSound {
    /// The audio, 8 kHz mono 16-bit PCM.
    pub samples_8k: Vec<i16>,
    /// Its format.
    pub format: SoundFormat,
    /// Sample rate of the file, Hz.
    pub source_rate_hz: u32,
    /// Channels of the file (mixed down to one).
    pub channels: u16,
}

impl DecodedSound {
    /// Length of the sound, ms.
    pub fn duration_ms(&self) -> u64 {
        self.samples_8k.len() as u64 / 8
    }
}

/// Interleaved samples collected while decoding, with the duration limit enforced as they
/// arrive (a small compressed file can expand to hours).
struct Collect {
    rate_hz: u32,
    /// Longest sound accepted, seconds.
    max_s: u64,
    channels: u16,
    mono: Vec<i16>,
    /// Partial frame (fewer samples than channels) carried between blocks.
    acc: i32,
    acc_n: u16,
}

impl Collect {
    fn new(rate_hz: u32, channels: u16, max_s: u64) -> Result<Self, String> {
        if rate_hz == 0 || channels == 0 {
            return Err(format!("{rate_hz} Hz, {channels} channels"));
        }
        Ok(Self {
            rate_hz,
            max_s,
            channels,
            mono: Vec::new(),
            acc: 0,
            acc_n: 0,
        })
    }

    /// Adds interleaved samples (already 16-bit scaled) and mixes them down.
    fn push(&mut self, interleaved: impl IntoIterator<Item = i32>) -> Result<(), SoundError> {
        let max = self.max_s as usize * self.rate_hz as usize;
        for s in interleaved {
            self.acc += s;
            self.acc_n += 1;
            if self.acc_n == self.channels {
                let m = self.acc / i32::from(self.channels);
                self.mono
                    .push(m.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16);
                self.acc = 0;
                self.acc_n = 0;
                if self.mono.len() > max {
                    return Err(SoundError::TooLong {
                        limit_s: self.max_s,
                    });
                }
            }
        }
        Ok(())
    }

    fn finish(self, format: SoundFormat) -> Result<DecodedSound, SoundError> {
        if self.mono.is_empty() {
            return Err(SoundError::Empty);
        }
        let samples_8k = resample_to_8k(&self.mono, self.rate_hz)?;
        Ok(DecodedSound {
            samples_8k,
            format,
            source_rate_hz: self.rate_hz,
            channels: self.channels,
        })
    }
}

/// Scales a `bits`-bit integer sample to 16 bits.
fn to_16(s: i32, bits: u32) -> i32 {
    match bits {
        16 => s,
        b if b > 16 => s >> (b - 16),
        b => s << (16 - b),
    }
}

/// Decodes a whole sound file to 8 kHz mono (CPU-bound: run it on the blocking pool).
pub fn decode(bytes: &[u8], max_s: u64) -> Result<DecodedSound, SoundError> {
    let format = SoundFormat::sniff(bytes).ok_or(SoundError::UnknownFormat)?;
    let bad = |reason: String| SoundError::Undecodable {
        format: format.name(),
        reason,
    };
    match format {
        SoundFormat::Wav => {
            let mut r =
                hound::WavReader::new(Cursor::new(bytes)).map_err(|e| bad(e.to_string()))?;
            let spec = r.spec();
            let mut c = Collect::new(spec.sample_rate, spec.channels, max_s).map_err(bad)?;
            if u64::from(r.duration()) > max_s * u64::from(spec.sample_rate) {
                return Err(SoundError::TooLong { limit_s: max_s });
            }
            match spec.sample_format {
                hound::SampleFormat::Int => {
                    let bits = u32::from(spec.bits_per_sample);
                    let samples: Result<Vec<i32>, _> = r.samples::<i32>().collect();
                    let samples = samples.map_err(|e| bad(e.to_string()))?;
                    c.push(samples.into_iter().map(|s| to_16(s, bits)))?;
                }
                hound::SampleFormat::Float => {
                    let samples: Result<Vec<f32>, _> = r.samples::<f32>().collect();
                    let samples = samples.map_err(|e| bad(e.to_string()))?;
                    c.push(samples.into_iter().map(|s| (s * 32767.0) as i32))?;
                }
            }
            c.finish(format)
        }
        SoundFormat::OggVorbis => {
            let mut r = lewton::inside_ogg::OggStreamReader::new(Cursor::new(bytes))
                .map_err(|e| bad(e.to_string()))?;
            let mut c = Collect::new(
                r.ident_hdr.audio_sample_rate,
                u16::from(r.ident_hdr.audio_channels),
                max_s,
            )
            .map_err(bad)?;
            while let Some(packet) = r.read_dec_packet_itl().map_err(|e| bad(e.to_string()))? {
                c.push(packet.into_iter().map(i32::from))?;
            }
            c.finish(format)
        }
        SoundFormat::Flac => {
            let mut r =
                claxon::FlacReader::new(Cursor::new(bytes)).map_err(|e| bad(e.to_string()))?;
            let info = r.streaminfo();
            let channels = u16::try_from(info.channels).map_err(|e| bad(e.to_string()))?;
            let mut c = Collect::new(info.sample_rate, channels, max_s).map_err(bad)?;
            if info
                .samples
                .is_some_and(|n| n > max_s * u64::from(info.sample_rate))
            {
                return Err(SoundError::TooLong { limit_s: max_s });
            }
            let bits = info.bits_per_sample;
            let mut block = Vec::new();
            for s in r.samples() {
                block.push(to_16(s.map_err(|e| bad(e.to_string()))?, bits));
                if block.len() >= 4096 {
                    c.push(block.drain(..))?;
                }
            }
            c.push(block)?;
            c.finish(format)
        }
        SoundFormat::Mp3 => {
            let mut r = nanomp3::SliceReader::<i16>::new(bytes);
            let rate = r.sample_rate();
            let channels = r.channels().map_or(0, |ch| ch.num() as u16);
            let mut c = Collect::new(rate, channels, max_s)
                .map_err(|_| bad("no MPEG audio frames".into()))?;
            let mut buf = vec![0i16; 4608];
            loop {
                let n = r.read(&mut buf).map_err(|e| bad(e.to_string()))?;
                if n == 0 {
                    break;
                }
                c.push(buf[..n].iter().map(|&s| i32::from(s)))?;
            }
            c.finish(format)
        }
    }
}

/// Decodes on the blocking pool (never on the calling task).
pub async fn decode_off_task(bytes: Vec<u8>, max_s: u64) -> Result<DecodedSound, SoundError> {
    tokio::task::spawn_blocking(move || decode(&bytes, max_s))
        .await
        .map_err(|_| SoundError::Task)?
}

/// The storage key prefix of an organisation's uploaded sounds.
pub fn key_prefix(org_id: i64) -> String {
    format!("org-{org_id}/{STORAGE_DIR}/")
}

/// The storage key of a new upload: the organisation's prefix, the assistant, and the
/// content hash (so a changed file gets a new key and the cache never serves the old one).
pub fn storage_key(org_id: i64, assistant_id: i64, hash_hex: &str, format: SoundFormat) -> String {
    format!(
        "{}assistant-{assistant_id}-{}.{}",
        key_prefix(org_id),
        hash_hex.get(..16).unwrap_or(hash_hex),
        format.extension()
    )
}

/// Whether `key` may be read for a call of `org_id`: under its prefix, one plain file name.
pub fn key_belongs_to(key: &str, org_id: i64) -> bool {
    key.strip_prefix(&key_prefix(org_id)).is_some_and(|name| {
        !name.is_empty()
            && !name.contains(['/', '\\'])
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    })
}

/// SHA-256 of `bytes`, hex.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A sound ready to mix, shared by the calls that play it.
#[derive(Debug, Clone)]
pub struct CachedSound {
    /// 8 kHz mono PCM.
    pub samples: Arc<[i16]>,
    /// SHA-256 of the file it was decoded from, hex.
    pub hash: String,
    /// Prepared for looping: its end crossfaded into its start over [`LOOP_CROSSFADE_MS`].
    pub looped: bool,
}

/// Decoded sounds shared by every call, keyed by source (`key:<storage key>` or
/// `url:<sound_url>`) and whether it loops, one copy per content hash and loop mode, at most [`SoundLimits::cache_max_bytes`]
/// (the oldest loaded go first; calls playing them keep their copy). Concurrent calls that miss
/// on the same source wait for one load instead of each fetching it, and a failed load is
/// remembered for [`SoundLimits::failure_retry`] so a broken source is not hammered.
#[derive(Debug)]
pub struct SoundCache {
    limits: SoundLimits,
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    by_source: HashMap<String, Arc<OnceCell<CachedSound>>>,
    /// Sources in load order, for eviction.
    order: VecDeque<String>,
    bytes: usize,
    /// Sources whose last load failed: when it began and what it said.
    failed: HashMap<String, (Instant, String)>,
}

impl CacheInner {
    /// The remembered failure of `source` at `now`, if still within `retry`.
    fn recent_failure(&self, source: &str, now: Instant, retry: Duration) -> Option<SoundError> {
        let (at, reason) = self.failed.get(source)?;
        let ago = now.saturating_duration_since(*at);
        (ago < retry).then(|| SoundError::RecentFailure {
            reason: reason.clone(),
            ago_s: ago.as_secs(),
            retry_in_s: (retry - ago).as_secs_f64().ceil() as u64,
        })
    }
}

impl SoundCache {
    /// An empty cache held to `limits`.
    pub fn new(limits: SoundLimits) -> Self {
        Self {
            limits,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    /// The limits this cache and its loads are held to.
    pub fn limits(&self) -> SoundLimits {
        self.limits
    }

    /// Bytes of PCM held (shared copies counted once).
    pub fn held_bytes(&self) -> usize {
        self.inner.lock().map_or(0, |c| c.bytes)
    }

    /// The sound of `source`, loading it with `load` (bytes of the file) if it is not cached;
    /// `looped`: with its loop seam smoothed (a sound played once keeps its ends). A failed load is remembered for [`SoundLimits::failure_retry`]: until then the source
    /// answers [`SoundError::RecentFailure`] without loading.
    pub async fn get_or_load<F, Fut>(
        &self,
        source: &str,
        looped: bool,
        load: F,
    ) -> Result<CachedSound, SoundError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<u8>, SoundError>>,
    {
        self.get_or_load_at(source, looped, Instant::now(), load)
            .await
    }

    /// [`SoundCache::get_or_load`] as of `now` (the failure memory's clock).
    async fn get_or_load_at<F, Fut>(
        &self,
        source: &str,
        looped: bool,
        now: Instant,
        load: F,
    ) -> Result<CachedSound, SoundError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<u8>, SoundError>>,
    {
        let source = if looped {
            format!("{source} looped")
        } else {
            source.to_owned()
        };
        let retry = self.limits.failure_retry;
        let cell = {
            let mut c = self.inner.lock().map_err(|_| SoundError::Task)?;
            if let Some(recent) = c.recent_failure(&source, now, retry) {
                return Err(recent);
            }
            c.by_source.entry(source.clone()).or_default().clone()
        };
        let mut fresh = false;
        let loaded = cell
            .get_or_try_init(|| async {
                // Calls that waited on a load that failed do not repeat it.
                if let Some(recent) = self
                    .inner
                    .lock()
                    .ok()
                    .and_then(|c| c.recent_failure(&source, now, retry))
                {
                    return Err(recent);
                }
                let loaded = async {
                    let bytes = load().await?;
                    let hash = content_hash(&bytes);
                    // The same file under another source shares its decoded copy.
                    if let Some(same) = self.find_hash(&hash, looped) {
                        return Ok(same);
                    }
                    let mut samples = decode_off_task(bytes, self.limits.max_duration_s)
                        .await?
                        .samples_8k;
                    if looped {
                        smooth_loop_seam(&mut samples, LOOP_CROSSFADE_MS * 8);
                    }
                    fresh = true;
                    Ok::<_, SoundError>(CachedSound {
                        samples: samples.into(),
                        hash,
                        looped,
                    })
                }
                .await;
                if let Err(e) = &loaded {
                    self.remember_failure(&source, now, e);
                }
                loaded
            })
            .await;
        let sound = loaded?.clone();
        if fresh {
            self.account(source, sound.samples.len() * 2);
        } else if let Ok(mut c) = self.inner.lock()
            && !c.order.contains(&source)
        {
            c.order.push_back(source);
        }
        Ok(sound)
    }

    /// Remembers that loading `source` (begun at `now`) failed with `error`, forgetting
    /// failures older than the retry time; nothing when failures are not remembered.
    fn remember_failure(&self, source: &str, now: Instant, error: &SoundError) {
        let retry = self.limits.failure_retry;
        let Ok(mut c) = self.inner.lock() else {
            return;
        };
        c.failed
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < retry);
        // The empty cell would only grow the map; the next load after the retry time makes one.
        if c.by_source
            .get(source)
            .is_some_and(|cell| !cell.initialized())
        {
            c.by_source.remove(source);
        }
        if !retry.is_zero() {
            c.failed.insert(source.to_owned(), (now, error.to_string()));
        }
    }

    fn find_hash(&self, hash: &str, looped: bool) -> Option<CachedSound> {
        let c = self.inner.lock().ok()?;
        c.by_source
            .values()
            .filter_map(|cell| cell.get())
            .find(|s| s.hash == hash && s.looped == looped)
            .cloned()
    }

    /// Counts a newly decoded sound and evicts the oldest until under the budget.
    fn account(&self, source: String, bytes: usize) {
        let Ok(mut c) = self.inner.lock() else {
            return;
        };
        c.bytes += bytes;
        c.order.push_back(source.clone());
        while c.bytes > self.limits.cache_max_bytes {
            let Some(old) = c.order.pop_front() else {
                break;
            };
            if old == source {
                // The newest alone is over budget: keep it (it is already playing).
                c.order.push_back(old);
                break;
            }
            let Some(cell) = c.by_source.remove(&old) else {
                continue;
            };
            if let Some(gone) = cell.get() {
                let still_shared = c
                    .by_source
                    .values()
                    .filter_map(|cell| cell.get())
                    .any(|s| s.hash == gone.hash && s.looped == gone.looped);
                if !still_shared {
                    c.bytes = c.bytes.saturating_sub(gone.samples.len() * 2);
                }
            }
        }
    }
}

/// Reads a stored sound of at most `max_bytes`.
async fn read_stored(
    storage: &RecordingStorage,
    key: &str,
    max_bytes: usize,
) -> Result<Vec<u8>, SoundError> {
    let location = storage.location_of(key);
    let opened = storage.open(&location, None).await?;
    if opened.total_bytes > max_bytes as u64 {
        return Err(SoundError::TooLarge {
            limit_bytes: max_bytes,
        });
    }
    let mut body = opened.body;
    let mut out = Vec::with_capacity(opened.total_bytes as usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| SoundError::Fetch(e.to_string()))?;
        if out.len() + chunk.len() > max_bytes {
            return Err(SoundError::TooLarge {
                limit_bytes: max_bytes,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Downloads `url` through the guarded tenant client: http(s) only, at most
/// `limits.max_bytes`, within `limits.fetch_timeout`.
pub async fn fetch_url(
    client: &switchboard_netguard::GuardedClient,
    url: &str,
    limits: SoundLimits,
) -> Result<Vec<u8>, SoundError> {
    let max_bytes = limits.max_bytes;
    let fetch = async {
        let parsed = url::Url::parse(url.trim()).map_err(|e| SoundError::Fetch(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(SoundError::Fetch("only http and https URLs".into()));
        }
        let req = client
            .request(reqwest::Method::GET, url)
            .map_err(|e| SoundError::Fetch(e.to_string()))?;
        let resp = req.send().await.map_err(|e| {
            let refused = switchboard_netguard::refusal_of(&e).map(ToString::to_string);
            SoundError::Fetch(refused.unwrap_or_else(|| e.without_url().to_string()))
        })?;
        if !resp.status().is_success() {
            return Err(SoundError::Fetch(format!(
                "HTTP {}",
                resp.status().as_u16()
            )));
        }
        if resp.content_length().is_some_and(|n| n > max_bytes as u64) {
            return Err(SoundError::TooLarge {
                limit_bytes: max_bytes,
            });
        }
        let mut body = resp.bytes_stream();
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| SoundError::Fetch(e.without_url().to_string()))?;
            if out.len() + chunk.len() > max_bytes {
                return Err(SoundError::TooLarge {
                    limit_bytes: max_bytes,
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    };
    tokio::time::timeout(limits.fetch_timeout, fetch)
        .await
        .map_err(|_| {
            SoundError::Fetch(format!(
                "not received within {} ms",
                limits.fetch_timeout.as_millis()
            ))
        })?
}

/// The sound a call of `org_id` plays for `settings`, through the shared cache: the uploaded
/// file when `storage_key` is set, else `sound_url`; `None` when background sound is off or
/// has no source.
pub async fn load_for_call(
    state: &AppState,
    org_id: i64,
    settings: &BackgroundSound,
) -> Result<Option<CachedSound>, SoundError> {
    if !settings.enabled {
        return Ok(None);
    }
    if let Some(key) = settings
        .storage_key
        .as_deref()
        .filter(|k| !k.trim().is_empty())
    {
        if !key_belongs_to(key, org_id) {
            return Err(SoundError::ForeignKey);
        }
        let storage = state.recordings.clone();
        let owned = key.to_owned();
        let max_bytes = state.background_sounds.limits().max_bytes;
        return state
            .background_sounds
            .get_or_load(&format!("key:{key}"), settings.loop_sound, || async move {
                read_stored(&storage, &owned, max_bytes).await
            })
            .await
            .map(Some);
    }
    if let Some(url) = settings
        .sound_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
    {
        let client = state.tenant_http.clone();
        let owned = url.to_owned();
        let limits = state.background_sounds.limits();
        return state
            .background_sounds
            .get_or_load(&format!("url:{url}"), settings.loop_sound, || async move {
                fetch_url(&client, &owned, limits).await
            })
            .await
            .map(Some);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `background_sound.max_duration_s` of the default config.
    const MAX_S: u64 = 600;

    fn wav(rate: u32, channels: u16, seconds: f32, amp: f32) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut cur = Cursor::new(Vec::new());
        {
            let mut w = hound::WavWriter::new(&mut cur, spec).expect("writer");
            let n = (rate as f32 * seconds) as usize;
            for i in 0..n {
                let v = (amp * (2.0 * std::f32::consts::PI * 300.0 * i as f32 / rate as f32).sin())
                    as i16;
                for _ in 0..channels {
                    w.write_sample(v).expect("sample");
                }
            }
            w.finalize().expect("finalize");
        }
        cur.into_inner()
    }

    #[test]
    fn sniffs_the_four_formats_and_nothing_else() {
        assert_eq!(
            SoundFormat::sniff(&wav(8000, 1, 0.01, 1.0)),
            Some(SoundFormat::Wav)
        );
        assert_eq!(
            SoundFormat::sniff(b"OggS\0\x02"),
            Some(SoundFormat::OggVorbis)
        );
        assert_eq!(SoundFormat::sniff(b"fLaC\0\0"), Some(SoundFormat::Flac));
        assert_eq!(SoundFormat::sniff(b"ID3\x04"), Some(SoundFormat::Mp3));
        assert_eq!(
            SoundFormat::sniff(&[0xFF, 0xFB, 0x90]),
            Some(SoundFormat::Mp3)
        );
        assert_eq!(SoundFormat::sniff(b"%PDF-1.4"), None);
        assert!(matches!(
            decode(b"hello", MAX_S),
            Err(SoundError::UnknownFormat)
        ));
    }

    #[test]
    fn stereo_wav_at_44k_becomes_8k_mono_at_its_level() {
        let d = decode(&wav(44100, 2, 0.5, 12000.0), MAX_S).expect("decodes");
        assert_eq!(d.samples_8k.len(), 4000);
        assert_eq!((d.source_rate_hz, d.channels), (44100, 2));
        let peak = d.samples_8k[400..3600]
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap_or(0);
        assert!((11400..=12600).contains(&peak), "peak {peak}");
    }

    /// 1 s of 440 Hz at amplitude 10000 (see `fixtures/sounds/README.md`).
    const MP3: &[u8] = include_bytes!("../../../fixtures/sounds/tone_440hz_1s.mp3");
    const OGG: &[u8] = include_bytes!("../../../fixtures/sounds/tone_440hz_1s.ogg");
    const FLAC: &[u8] = include_bytes!("../../../fixtures/sounds/tone_440hz_1s.flac");

    #[test]
    fn mp3_ogg_and_flac_decode_to_a_second_of_the_tone() {
        for (bytes, format, rate, channels) in [
            (MP3, SoundFormat::Mp3, 22050, 1),
            (OGG, SoundFormat::OggVorbis, 16000, 2),
            (FLAC, SoundFormat::Flac, 44100, 1),
        ] {
            let d = decode(bytes, MAX_S).unwrap_or_else(|e| panic!("{format:?}: {e}"));
            assert_eq!(d.format, format);
            assert_eq!(
                (d.source_rate_hz, d.channels),
                (rate, channels),
                "{format:?}"
            );
            // The lossy ones keep some padding: MP3 the encoder's delay and padding when the
            // file carries no gapless information (this one: 1.07 s), Vorbis its last block
            // (lewton does not trim to the final granule position: 1.024 s). FLAC is exact.
            let len = d.samples_8k.len();
            let max = if format == SoundFormat::Flac {
                8100
            } else {
                8800
            };
            assert!((7950..=max).contains(&len), "{format:?}: {len} samples");
            let peak = d.samples_8k[800..7200]
                .iter()
                .map(|s| s.unsigned_abs())
                .max()
                .unwrap_or(0);
            assert!((9000..=11000).contains(&peak), "{format:?}: peak {peak}");
            let crossings = d.samples_8k[800..7200]
                .windows(2)
                .filter(|w| (w[0] < 0) != (w[1] < 0))
                .count();
            // 440 Hz over 0.8 s: 704 crossings.
            assert!((690..=720).contains(&crossings), "{format:?}: {crossings}");
        }
    }

    #[test]
    fn sounds_longer_than_the_limit_are_refused_in_every_format() {
        let two_seconds = wav(8000, 1, 2.0, 1000.0);
        for (bytes, name) in [
            (&two_seconds[..], "WAV"),
            (MP3, "MP3"),
            (OGG, "OGG"),
            (FLAC, "FLAC"),
        ] {
            // Every fixture here is at least one second long.
            assert!(
                matches!(decode(bytes, 0), Err(SoundError::TooLong { limit_s: 0 })),
                "{name}"
            );
        }
        assert!(matches!(
            decode(&two_seconds, 1),
            Err(SoundError::TooLong { limit_s: 1 })
        ));
        assert_eq!(
            decode(&two_seconds, 2)
                .expect("at the limit")
                .samples_8k
                .len(),
            16000
        );
    }

    #[test]
    fn truncated_or_empty_files_are_refused() {
        let full = wav(8000, 1, 0.1, 1000.0);
        assert!(matches!(
            decode(&full[..30], MAX_S),
            Err(SoundError::Undecodable { format: "WAV", .. })
        ));
        assert!(matches!(
            decode(&wav(8000, 1, 0.0, 1.0), MAX_S),
            Err(SoundError::Empty)
        ));
        assert!(matches!(
            decode(b"OggS not really", MAX_S),
            Err(SoundError::Undecodable {
                format: "OGG/Vorbis",
                ..
            })
        ));
        assert!(matches!(
            decode(b"fLaC\0\0\0\0", MAX_S),
            Err(SoundError::Undecodable { format: "FLAC", .. })
        ));
        assert!(matches!(
            decode(&[0xFF, 0xFB, 0, 0, 0, 0], MAX_S),
            Err(SoundError::Undecodable { format: "MP3", .. })
        ));
    }

    #[test]
    fn keys_are_confined_to_their_organisation() {
        let k = storage_key(7, 3, &"ab".repeat(32), SoundFormat::Wav);
        assert_eq!(
            k,
            "org-7/background-sounds/assistant-3-abababababababab.wav"
        );
        assert!(key_belongs_to(&k, 7));
        assert!(!key_belongs_to(&k, 8));
        assert!(!key_belongs_to("org-7/background-sounds/../calls/x.wav", 7));
        assert!(!key_belongs_to("org-7/background-sounds/", 7));
        assert!(!key_belongs_to("/etc/passwd", 7));
    }

    fn limits(failure_retry_s: u64) -> SoundLimits {
        SoundLimits {
            max_bytes: 1 << 20,
            fetch_timeout: Duration::from_secs(1),
            cache_max_bytes: 1 << 20,
            failure_retry: Duration::from_secs(failure_retry_s),
            max_duration_s: MAX_S,
        }
    }

    #[tokio::test]
    async fn the_cache_loads_once_and_shares_copies_of_one_file() {
        let cache = SoundCache::new(limits(60));
        let bytes = wav(16000, 1, 0.2, 5000.0);
        let loads = std::sync::atomic::AtomicUsize::new(0);
        let load = || async {
            loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(bytes.clone())
        };
        let a = cache.get_or_load("url:a", false, load).await.expect("a");
        let again = cache
            .get_or_load("url:a", false, load)
            .await
            .expect("a again");
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(Arc::ptr_eq(&a.samples, &again.samples));
        let b = cache.get_or_load("key:b", false, load).await.expect("b");
        assert!(
            Arc::ptr_eq(&a.samples, &b.samples),
            "same content, one copy"
        );
        assert_eq!(cache.held_bytes(), 1600 * 2);
        // Looped, the same file is another copy: its seam crossfaded, 15 ms shorter.
        let looped = cache
            .get_or_load("url:a", true, load)
            .await
            .expect("looped");
        assert_eq!(looped.samples.len(), 1600 - LOOP_CROSSFADE_MS * 8);
        assert_eq!(looped.samples[200..], a.samples[200..1480]);
        assert_eq!(cache.held_bytes(), (1600 + 1480) * 2);
    }

    #[tokio::test]
    async fn a_failed_load_is_remembered_for_the_retry_time_only() {
        let cache = SoundCache::new(limits(60));
        let loads = std::sync::atomic::AtomicUsize::new(0);
        let failing = || async {
            loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(SoundError::Fetch("HTTP 404".into()))
        };
        let t0 = Instant::now();
        let first = cache.get_or_load_at("url:bad", true, t0, failing).await;
        assert!(matches!(first, Err(SoundError::Fetch(_))), "{first:?}");
        // Within the retry time: answered at once, not loaded again.
        let later = t0 + Duration::from_secs(59);
        let again = cache.get_or_load_at("url:bad", true, later, failing).await;
        match again {
            Err(SoundError::RecentFailure {
                reason,
                ago_s,
                retry_in_s,
            }) => {
                assert!(reason.contains("HTTP 404"), "{reason}");
                assert_eq!((ago_s, retry_in_s), (59, 1));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Another source, or the same played once, is its own entry.
        let other = cache.get_or_load_at("url:bad", false, later, failing).await;
        assert!(matches!(other, Err(SoundError::Fetch(_))));
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 2);
        // After it: tried again, and a success is cached as usual.
        let bytes = wav(8000, 1, 0.1, 1000.0);
        let ok = cache
            .get_or_load_at("url:bad", true, t0 + Duration::from_secs(60), || async {
                Ok(bytes.clone())
            })
            .await;
        assert!(ok.is_ok(), "{ok:?}");

        // With no retry time, every call tries again.
        let eager = SoundCache::new(limits(0));
        for _ in 0..2 {
            assert!(
                eager
                    .get_or_load_at("url:x", false, t0, failing)
                    .await
                    .is_err()
            );
        }
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 4);
    }
}
