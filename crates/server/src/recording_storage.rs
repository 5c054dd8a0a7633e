//! Where finished call recordings are kept, behind one interface: a local directory (the
//! default) or an S3-compatible object store (`[recordings] storage = "s3"`).
//!
//! Recordings are always streamed to a local spool while the call runs (see
//! `call::recording`): `<base_dir>/org-<organisation id>/<recordings_dir>/call-<call id>-<track>.wav.part`.
//! At the end of the call (or at the next start, after a crash) the finished file is handed to
//! [`RecordingStorage::store`] under its key, `org-<id>/<recordings_dir>/call-<id>-<track>.<ext>`:
//! - local: the file already is in place; its path is the stored location.
//! - S3: the file is uploaded (a multipart upload read from disk in
//!   [`S3_PART_BYTES`] parts, so memory stays bounded whatever the length), then the local copy
//!   is deleted; the location is `s3://<bucket>/<key>`. Spooling locally and uploading at the
//!   end, rather than a multipart upload during the call: S3 parts must be at least 5 MiB (over
//!   ten minutes of one 8 kHz track), a WAV header can only be fixed once the length is known,
//!   and a crash must leave something to finalise.
//!
//! Reads ([`RecordingStorage::open`]) serve byte ranges for `GET …/recording/{id}/play`; S3
//! objects are proxied (ranged GETs) by default, so the API key and organisation checks stay
//! the only way in and the store need not be reachable by clients. With
//! `recordings.s3.presigned_play_ttl_s` set, [`RecordingStorage::presigned_play_url`] gives a
//! URL signed for that long instead (after the same checks), and clients download from the
//! bucket.
//! The store is chosen by the stored location, so recordings written before a switch of
//! `storage` stay playable. Credentials come from the environment and are never logged.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::config::{RecordingStorageKind, RecordingsSettings, S3Settings};

/// Size of each part of an S3 upload, in bytes (S3's minimum part size, 5 MiB).
pub const S3_PART_BYTES: usize = 5 * 1024 * 1024;

/// Prefix of the locations of recordings kept in S3.
const S3_SCHEME: &str = "s3://";

/// Why a recording could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The S3 settings are incomplete or the client could not be built.
    #[error("recordings storage settings: {0}")]
    Config(String),
    /// A local file could not be read, written or removed.
    #[error("recording file {path:?}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the OS reported.
        source: std::io::Error,
    },
    /// The object store refused or failed a request.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// The recording is not where its row says (deleted, or another storage's location).
    #[error("recording not found in storage")]
    NotFound,
}

/// The bytes of a recording, or of a range of it, ready to stream.
pub struct Opened {
    /// Size of the whole recording, bytes.
    pub total_bytes: u64,
    /// The requested bytes.
    pub body: BoxStream<'static, std::io::Result<Bytes>>,
}

/// An S3-compatible bucket.
#[derive(Clone)]
struct S3 {
    store: Arc<object_store::aws::AmazonS3>,
    bucket: String,
    prefix: String,
    /// How long presigned play URLs last; zero = proxy instead.
    presigned_play_ttl: std::time::Duration,
}

/// Storage of finished recordings, shared by every call (cheap to clone).
#[derive(Clone)]
pub struct RecordingStorage {
    base_dir: PathBuf,
    s3: Option<S3>,
}

impl std::fmt::Debug for RecordingStorage {
    // Never the credentials (the client holds them).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingStorage")
            .field("base_dir", &self.base_dir)
            .field("s3_bucket", &self.s3.as_ref().map(|s| s.bucket.as_str()))
            .finish()
    }
}

impl RecordingStorage {
    /// The storage `[recordings]` describes. S3 credentials come from
    /// `recordings.s3.access_key_id` / `secret_access_key` (set them in the environment:
    /// `SWITCHBOARD_RECORDINGS__S3__…`) or else the standard `AWS_*` variables.
    pub fn from_settings(settings: &RecordingsSettings) -> Result<Self, StorageError> {
        let base_dir = PathBuf::from(&settings.base_dir);
        let s3 = match settings.storage {
            RecordingStorageKind::Local => None,
            RecordingStorageKind::S3 => Some(build_s3(&settings.s3)?),
        };
        Ok(Self { base_dir, s3 })
    }

    /// Local storage under `base_dir` (tests, tools).
    pub fn local(base_dir: impl Into<PathBuf>) -> Self {
        Self {
            base_dir: base_dir.into(),
            s3: None,
        }
    }

    /// The folder under which recordings are spooled (and kept, for local storage).
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// Stores the finished file `local` (under [`RecordingStorage::base_dir`]) as `key` and
    /// returns its location for the recording row.
    pub async fn store(&self, local: &Path, key: &str) -> Result<String, StorageError> {
        let Some(s3) = &self.s3 else {
            return Ok(local.to_string_lossy().into_owned());
        };
        let object = ObjectPath::from(format!("{}{key}", s3.prefix));
        let io = |source| StorageError::Io {
            path: local.to_path_buf(),
            source,
        };
        let mut file = tokio::fs::File::open(local).await.map_err(io)?;
        let upload = s3.store.put_multipart(&object).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, S3_PART_BYTES);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(io(e));
                }
            };
            if n == 0 {
                break;
            }
            // At most two parts in flight: memory stays at a few parts per upload.
            writer.wait_for_capacity(2).await?;
            writer.write(buf.get(..n).unwrap_or(&[]));
        }
        writer.finish().await?;
        drop(file);
        tokio::fs::remove_file(local).await.map_err(io)?;
        Ok(format!("{S3_SCHEME}{}/{object}", s3.bucket))
    }

    /// Opens the recording at `location` (as [`RecordingStorage::store`] returned it) and
    /// streams `range` of it (`None`: all of it). The size is known before the body is read,
    /// so the caller can check a range first with [`RecordingStorage::size`].
    pub async fn open(
        &self,
        location: &str,
        range: Option<Range<u64>>,
    ) -> Result<Opened, StorageError> {
        match location.strip_prefix(S3_SCHEME) {
            Some(rest) => {
                let (s3, object) = self.s3_object(rest)?;
                let total_bytes = s3.store.head(&object).await.map_err(not_found)?.size;
                let wanted = range.unwrap_or(0..total_bytes);
                if wanted.is_empty() {
                    return Ok(Opened {
                        total_bytes,
                        body: futures::stream::empty().boxed(),
                    });
                }
                let options = GetOptions {
                    range: Some(GetRange::Bounded(wanted)),
                    ..GetOptions::default()
                };
                let got = s3
                    .store
                    .get_opts(&object, options)
                    .await
                    .map_err(not_found)?;
                let body = got
                    .into_stream()
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .boxed();
                Ok(Opened { total_bytes, body })
            }
            None => {
                let path = PathBuf::from(location);
                let io = |source: std::io::Error| match source.kind() {
                    std::io::ErrorKind::NotFound => StorageError::NotFound,
                    _ => StorageError::Io {
                        path: path.clone(),
                        source,
                    },
                };
                let mut file = tokio::fs::File::open(&path).await.map_err(io)?;
                let total_bytes = file.metadata().await.map_err(io)?.len();
                let wanted = range.unwrap_or(0..total_bytes);
                file.seek(std::io::SeekFrom::Start(wanted.start))
                    .await
                    .map_err(io)?;
                let len = wanted.end.saturating_sub(wanted.start);
                let body = tokio_util::io::ReaderStream::new(file.take(len)).boxed();
                Ok(Opened { total_bytes, body })
            }
        }
    }

    /// Where a file stored under `key` is (the location [`RecordingStorage::store`] returns
    /// for it): `<base_dir>/<key>` locally, `s3://<bucket>/<prefix><key>` in S3.
    pub fn location_of(&self, key: &str) -> String {
        match &self.s3 {
            Some(s3) => format!("{S3_SCHEME}{}/{}{key}", s3.bucket, s3.prefix),
            None => self.base_dir.join(key).to_string_lossy().into_owned(),
        }
    }

    /// Stores `bytes` (a small file, held whole, such as a background sound) under `key`
    /// and returns its location: written under `base_dir` and, for S3, uploaded.
    pub async fn store_bytes(&self, key: &str, bytes: &[u8]) -> Result<String, StorageError> {
        let local = self.base_dir.join(key);
        let io = |source| StorageError::Io {
            path: local.clone(),
            source,
        };
        if let Some(dir) = local.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io)?;
        }
        tokio::fs::write(&local, bytes).await.map_err(io)?;
        self.store(&local, key).await
    }

    /// A URL that downloads the recording at `location` straight from the bucket for
    /// `recordings.s3.presigned_play_ttl_s` (SigV4 query signature): `None` for local
    /// recordings and when presigning is off. The caller checks the organisation first.
    pub async fn presigned_play_url(&self, location: &str) -> Result<Option<String>, StorageError> {
        let Some(rest) = location.strip_prefix(S3_SCHEME) else {
            return Ok(None);
        };
        let (s3, object) = self.s3_object(rest)?;
        if s3.presigned_play_ttl.is_zero() {
            return Ok(None);
        }
        let url = s3
            .store
            .signed_url(reqwest::Method::GET, &object, s3.presigned_play_ttl)
            .await?;
        Ok(Some(url.into()))
    }

    /// Removes the file at `location`; one that is already gone is not an error.
    pub async fn delete(&self, location: &str) -> Result<(), StorageError> {
        match location.strip_prefix(S3_SCHEME) {
            Some(rest) => {
                let (s3, object) = self.s3_object(rest)?;
                match s3.store.delete(&object).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(StorageError::ObjectStore(e)),
                }
            }
            None => match tokio::fs::remove_file(location).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(StorageError::Io {
                    path: PathBuf::from(location),
                    source,
                }),
            },
        }
    }

    /// Size of the recording at `location`, bytes.
    pub async fn size(&self, location: &str) -> Result<u64, StorageError> {
        match location.strip_prefix(S3_SCHEME) {
            Some(rest) => {
                let (s3, object) = self.s3_object(rest)?;
                Ok(s3.store.head(&object).await.map_err(not_found)?.size)
            }
            None => match tokio::fs::metadata(location).await {
                Ok(m) => Ok(m.len()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::NotFound),
                Err(source) => Err(StorageError::Io {
                    path: PathBuf::from(location),
                    source,
                }),
            },
        }
    }

    /// The configured bucket and the object of `bucket/key` (only in that bucket).
    fn s3_object(&self, bucket_and_key: &str) -> Result<(&S3, ObjectPath), StorageError> {
        let s3 = self.s3.as_ref().ok_or(StorageError::NotFound)?;
        let key = bucket_and_key
            .strip_prefix(s3.bucket.as_str())
            .and_then(|k| k.strip_prefix('/'))
            .ok_or(StorageError::NotFound)?;
        Ok((s3, ObjectPath::from(key)))
    }
}

fn not_found(e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound,
        other => StorageError::ObjectStore(other),
    }
}

fn build_s3(cfg: &S3Settings) -> Result<S3, StorageError> {
    let bucket = cfg.bucket.trim();
    if bucket.is_empty() {
        return Err(StorageError::Config(
            "recordings.s3.bucket is required when recordings.storage = \"s3\"".into(),
        ));
    }
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if !cfg.region.trim().is_empty() {
        builder = builder.with_region(cfg.region.trim());
    }
    if !cfg.endpoint.trim().is_empty() {
        // S3-compatible servers (MinIO, moto, …) are addressed by path, not virtual host.
        builder = builder
            .with_endpoint(cfg.endpoint.trim())
            .with_virtual_hosted_style_request(false)
            .with_allow_http(cfg.allow_http);
    }
    if let Some(id) = cfg.access_key_id.as_deref().filter(|s| !s.is_empty()) {
        builder = builder.with_access_key_id(id);
    }
    if let Some(secret) = cfg.secret_access_key.as_deref().filter(|s| !s.is_empty()) {
        builder = builder.with_secret_access_key(secret);
    }
    // The builder's error text names the missing setting, never a secret value.
    let store = builder
        .build()
        .map_err(|e| StorageError::Config(e.to_string()))?;
    let prefix = match cfg.prefix.trim().trim_matches('/') {
        "" => String::new(),
        p => format!("{p}/"),
    };
    Ok(S3 {
        store: Arc::new(store),
        bucket: bucket.to_owned(),
        prefix,
        presigned_play_ttl: std::time::Duration::from_secs(cfg.presigned_play_ttl_s),
    })
}
