//! Call traces: the flight recorder of a call (what its core was fed and decided), stored
//! compressed, one per call, always read and written by organisation.
//!
//! The store treats a trace as opaque bytes (the call core encodes it): it compresses them with
//! DEFLATE and keeps them as base64 TEXT, a type both backends share.

use std::io::{Read as _, Write as _};

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

/// A stored call trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallTraceRow {
    /// The call.
    pub call_id: i64,
    /// The organisation owning the call.
    pub organization_id: i64,
    /// The trace format version (the core's `TRACE_FORMAT_VERSION` when written).
    pub format_version: i64,
    /// The trace as the core encoded it (decompressed).
    pub bytes: Vec<u8>,
    /// When it was stored, unix ms.
    pub created_at: i64,
}

impl Store {
    /// Stores (or replaces) the trace of the organisation's call `call_id`. `NotFound` when the
    /// organisation has no such call.
    pub async fn save_call_trace(
        &self,
        org_id: i64,
        call_id: i64,
        format_version: i64,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        // Compressing megabytes is CPU work: off the async workers.
        let text =
            tokio::task::spawn_blocking(move || compress(&bytes).map(|c| STANDARD.encode(c)))
                .await
                .map_err(invalid)??;
        let res = sqlx::query(
            "INSERT INTO call_traces (call_id, organization_id, format_version, size_bytes, \
             trace, created_at) \
             SELECT id, organization_id, $3, $4, $5, $6 FROM calls \
             WHERE id = $1 AND organization_id = $2 \
             ON CONFLICT (call_id) DO UPDATE SET format_version = excluded.format_version, \
             size_bytes = excluded.size_bytes, trace = excluded.trace, \
             created_at = excluded.created_at",
        )
        .bind(call_id)
        .bind(org_id)
        .bind(format_version)
        .bind(size)
        .bind(text)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// The trace of the organisation's call `call_id`, or `None` (no such call in the
    /// organisation, or no trace was recorded).
    pub async fn get_call_trace(
        &self,
        org_id: i64,
        call_id: i64,
    ) -> Result<Option<CallTraceRow>, StoreError> {
        let row = sqlx::query(
            "SELECT call_id, organization_id, format_version, size_bytes, trace, created_at \
             FROM call_traces WHERE call_id = $1 AND organization_id = $2",
        )
        .bind(call_id)
        .bind(org_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let text: String = row.try_get("trace")?;
        let size: i64 = row.try_get("size_bytes")?;
        let size = u64::try_from(size).unwrap_or(0);
        let bytes = tokio::task::spawn_blocking(move || {
            let compressed = STANDARD.decode(text.as_bytes()).map_err(invalid)?;
            decompress(&compressed, size)
        })
        .await
        .map_err(invalid)??;
        Ok(Some(CallTraceRow {
            call_id: row.try_get("call_id")?,
            organization_id: row.try_get("organization_id")?,
            format_version: row.try_get("format_version")?,
            bytes,
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

fn compress(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut enc = DeflateEncoder::new(Vec::with_capacity(bytes.len() / 3), Compression::fast());
    enc.write_all(bytes)?;
    Ok(enc.finish()?)
}

fn decompress(bytes: &[u8], size_hint: u64) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(size_hint.min(MAX_TRACE_BYTES) as usize);
    DeflateDecoder::new(bytes)
        .take(MAX_TRACE_BYTES + 1)
        .read_to_end(&mut out)?;
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
        let c = compress(&data).expect("compress");
        assert!(c.len() < data.len() / 10);
        assert_eq!(decompress(&c, data.len() as u64).expect("decompress"), data);
        assert!(decompress(b"not deflate at all", 10).is_err());
    }
}
