//! Call traces: the flight recorder of a call (what its core was fed and decided), one per
//! call, always read and written by organisation.
//!
//! The store treats a trace as opaque bytes (the call core encodes them). The trace itself is
//! kept outside the database, DEFLATE-compressed ([`deflate_trace_writer`]), where the server's
//! recordings' storage put it; the row holds its location. Rows written before migration 0014
//! carry the trace inline (base64 TEXT of the compressed bytes) and are read as they are.

use std::io::{Read as _, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use sqlx::Row;

use crate::{Store, StoreError, now_ms};

/// Largest uncompressed trace read back, bytes (a 2-hour call with its caller audio is about
/// 60 MB); a larger stored value is refused rather than inflated without bound.
pub const MAX_TRACE_BYTES: u64 = 256 * 1024 * 1024;

/// Where a stored trace's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredTrace {
    /// A row written before traces left the database: the trace, already decompressed.
    Inline(Vec<u8>),
    /// The location of the compressed trace in the recordings' storage (a local path or an
    /// `s3://` URL), to read and [`inflate_trace`].
    Located(String),
}

/// A stored call trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallTraceRow {
    /// The call.
    pub call_id: i64,
    /// The organisation owning the call.
    pub organization_id: i64,
    /// The trace format version (the core's `TRACE_FORMAT_VERSION` when written).
    pub format_version: i64,
    /// Size of the decompressed trace, bytes.
    pub size_bytes: u64,
    /// The trace, or where it is.
    pub body: StoredTrace,
    /// When it was stored, unix ms.
    pub created_at: i64,
}

impl Store {
    /// Records (or replaces) where the trace of the organisation's call `call_id` is:
    /// `location` holds the DEFLATE-compressed trace of `size_bytes` bytes. `NotFound` when
    /// the organisation has no such call (the caller then removes what it stored).
    pub async fn save_call_trace_location(
        &self,
        org_id: i64,
        call_id: i64,
        format_version: i64,
        size_bytes: u64,
        location: &str,
    ) -> Result<(), StoreError> {
        let res = sqlx::query(
            "INSERT INTO call_traces (call_id, organization_id, format_version, size_bytes, \
             location, created_at) \
             SELECT id, organization_id, $3, $4, $5, $6 FROM calls \
             WHERE id = $1 AND organization_id = $2 \
             ON CONFLICT (call_id) DO UPDATE SET format_version = excluded.format_version, \
             size_bytes = excluded.size_bytes, trace = NULL, location = excluded.location, \
             created_at = excluded.created_at",
        )
        .bind(call_id)
        .bind(org_id)
        .bind(format_version)
        .bind(i64::try_from(size_bytes).unwrap_or(i64::MAX))
        .bind(location)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Whether the organisation's call `call_id` has a stored trace (without reading it).
    pub async fn has_call_trace(&self, org_id: i64, call_id: i64) -> Result<bool, StoreError> {
        let row =
            sqlx::query("SELECT 1 FROM call_traces WHERE call_id = $1 AND organization_id = $2")
                .bind(call_id)
                .bind(org_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }

    /// The trace of the organisation's call `call_id`, or `None` (no such call in the
    /// organisation, or no trace was recorded).
    pub async fn get_call_trace(
        &self,
        org_id: i64,
        call_id: i64,
    ) -> Result<Option<CallTraceRow>, StoreError> {
        let row = sqlx::query(
            "SELECT call_id, organization_id, format_version, size_bytes, trace, location, \
             created_at FROM call_traces WHERE call_id = $1 AND organization_id = $2",
        )
        .bind(call_id)
        .bind(org_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let size: i64 = row.try_get("size_bytes")?;
        let size_bytes = u64::try_from(size).unwrap_or(0);
        let location: Option<String> = row.try_get("location")?;
        let body = match location {
            Some(location) => StoredTrace::Located(location),
            None => {
                let text: String = row.try_get("trace")?;
                let bytes = tokio::task::spawn_blocking(move || {
                    let compressed = STANDARD.decode(text.as_bytes()).map_err(invalid)?;
                    inflate_trace(&compressed, size_bytes)
                })
                .await
                .map_err(invalid)??;
                StoredTrace::Inline(bytes)
            }
        };
        Ok(Some(CallTraceRow {
            call_id: row.try_get("call_id")?,
            organization_id: row.try_get("organization_id")?,
            format_version: row.try_get("format_version")?,
            size_bytes,
            body,
            created_at: row.try_get("created_at")?,
        }))
    }
}

fn invalid(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("stored call trace: {e}"),
    ))
}

/// Compresses what is written to it into `out`, the way stored traces are compressed (raw
/// DEFLATE, fast level: traces are mostly µ-law audio and JSON, and the level barely changes
/// their size). Call `finish` on it.
pub fn deflate_trace_writer<W: Write>(out: W) -> DeflateEncoder<W> {
    DeflateEncoder::new(out, Compression::fast())
}

/// Decompresses a stored trace, refusing one that inflates past [`MAX_TRACE_BYTES`];
/// `size_hint` (the stored size) only sizes the buffer.
pub fn inflate_trace(compressed: &[u8], size_hint: u64) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(size_hint.min(MAX_TRACE_BYTES) as usize);
    DeflateDecoder::new(compressed)
        .take(MAX_TRACE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(invalid)?;
    if out.len() as u64 > MAX_TRACE_BYTES {
        return Err(invalid("larger than the read bound"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_round_trips() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut enc = deflate_trace_writer(Vec::new());
        enc.write_all(&data).expect("compress");
        let c = enc.finish().expect("finish");
        assert!(c.len() < data.len() / 10);
        assert_eq!(
            inflate_trace(&c, data.len() as u64).expect("decompress"),
            data
        );
        assert!(inflate_trace(b"not deflate at all", 10).is_err());
    }
}
