//! An assistant's uploaded background sound (`tts_settings.background_sound.storage_key`):
//! `POST /api/v1/assistants/{assistant_id}/background-sound` (the file as the raw body, or as
//! the `file` part of a multipart form) and `DELETE` on the same path.
//!
//! The file must be WAV, MP3, OGG/Vorbis or FLAC (recognised by its content, whatever its name
//! or declared type), at most `background_sound.max_bytes` (413 past it, counted while the body
//! streams in), at most `background_sound.max_duration_s` long, and must decode: it is decoded whole, off the request
//! task, before it is stored. It is kept through the recordings' storage (local directory or
//! S3) under `org-<id>/background-sounds/assistant-<id>-<content hash>.<ext>`, and that key is
//! set as the record's `storage_key` (a previous upload is removed). Another organisation's
//! assistant is a 404.

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::routing::post;
use futures::StreamExt as _;
use serde::Serialize;
use switchboard_assistant::AssistantConfig;
use utoipa::{OpenApi, ToSchema};

use crate::auth::Auth;
use crate::background_sound::{self, SoundError, SoundFormat, key_belongs_to};
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiPath;
use crate::routes::ApiResponse;
use crate::routes::assistants::{AssistantPath, load_assistant, stored_config};
use crate::state::AppState;

/// How many times a change of `storage_key` re-reads the record when a concurrent update won.
const SAVE_ATTEMPTS: usize = 8;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/v1/assistants/{assistant_id}/background-sound",
        // The size limit is `background_sound.max_bytes`, enforced while reading.
        post(upload_background_sound)
            .delete(delete_background_sound)
            .layer(DefaultBodyLimit::disable()),
    )
}

/// OpenAPI description of this module's paths.
#[derive(OpenApi)]
#[openapi(
    paths(upload_background_sound, delete_background_sound),
    components(schemas(BackgroundSoundUpload, BackgroundSoundForm))
)]
pub struct BackgroundSoundApi;

/// The multipart form of an upload (the raw file as the body works too).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct BackgroundSoundForm {
    /// The sound: WAV, MP3, OGG/Vorbis or FLAC.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// What was stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackgroundSoundUpload {
    /// The record's new `tts_settings.background_sound.storage_key`.
    pub storage_key: String,
    /// `WAV`, `MP3`, `OGG/Vorbis` or `FLAC`.
    pub format: String,
    /// Length of the sound, ms.
    pub duration_ms: u64,
    /// Sample rate of the file, Hz (calls play it resampled to 8 kHz).
    pub sample_rate_hz: u32,
    /// Channels of the file (mixed down to mono).
    pub channels: u16,
    /// Size of the file, bytes.
    pub size_bytes: usize,
}

/// Reads the raw body or the multipart `file` part, at most `background_sound.max_bytes`.
async fn read_sound(state: &AppState, req: Request) -> Result<Vec<u8>, ApiError> {
    let max_bytes = state.background_sounds.limits().max_bytes;
    let too_large = ApiError::PayloadTooLarge {
        limit_bytes: max_bytes,
    };
    let multipart = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().starts_with("multipart/form-data"));
    if !multipart {
        let mut body = req.into_body().into_data_stream();
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("request body: {e}")))?;
            if out.len() + chunk.len() > max_bytes {
                return Err(too_large);
            }
            out.extend_from_slice(&chunk);
        }
        return Ok(out);
    }
    let mut form = Multipart::from_request(req, state)
        .await
        .map_err(|e| ApiError::BadRequest(format!("multipart body: {e}")))?;
    let mut file = None;
    while let Some(mut field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::BadRequest(format!("multipart body: {e}")))?
    {
        let is_file = field.name() == Some("file");
        let mut out = Vec::new();
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| ApiError::BadRequest(format!("multipart body: {e}")))?
        {
            if out.len() + chunk.len() > max_bytes {
                return Err(too_large);
            }
            out.extend_from_slice(&chunk);
        }
        if is_file {
            file = Some(out);
        }
    }
    file.ok_or_else(|| ApiError::invalid("file", "is required"))
}

/// Saves `change` applied to the stored record, re-reading it if another update lands first.
async fn save_change(
    state: &AppState,
    auth: &Auth,
    id: i64,
    change: impl Fn(&mut AssistantConfig),
) -> Result<Option<String>, ApiError> {
    for _ in 0..SAVE_ATTEMPTS {
        let row = load_assistant(state, auth, id).await?;
        let mut config = stored_config(&row)?;
        let previous = config.tts_settings.background_sound.storage_key.clone();
        change(&mut config);
        let json = config.to_stored_json().map_err(ApiError::internal)?;
        let updated = state
            .store
            .update_assistant_if_unchanged(
                auth.organization_id,
                id,
                row.updated_at_ms,
                &config.name,
                config.active(),
                &json,
            )
            .await?;
        if updated.is_some() {
            return Ok(previous);
        }
    }
    Err(ApiError::Conflict(format!(
        "assistant {id} kept changing while its background sound was set; retry"
    )))
}

/// Removes a previous upload of this organisation (a failure only costs disk: logged).
async fn remove_stored(state: &AppState, org_id: i64, key: Option<String>) {
    let Some(key) = key.filter(|k| key_belongs_to(k, org_id)) else {
        return;
    };
    if let Err(e) = state
        .recordings
        .delete(&state.recordings.location_of(&key))
        .await
    {
        tracing::warn!(error = %e, "could not remove a replaced background sound");
    }
}

/// Upload the assistant's background sound (raw body or multipart `file`): WAV, MP3,
/// OGG/Vorbis or FLAC, decoded before it is stored. Sets
/// `tts_settings.background_sound.storage_key` (it takes precedence over `sound_url`); calls
/// play it when `tts_settings.background_sound.enabled` is on.
#[utoipa::path(
    post,
    path = "/api/v1/assistants/{assistant_id}/background-sound",
    tag = "assistants",
    security(("bearer" = [])),
    params(("assistant_id" = i64, Path, description = "Assistant id")),
    request_body(content = BackgroundSoundForm, content_type = "multipart/form-data",
        description = "Or the file itself as the body (any other content type)"),
    responses(
        (status = 200, description = "Stored and set as the record's storage_key", body = BackgroundSoundUpload),
        (status = 400, description = "A malformed multipart body", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such assistant in your organisation", body = ErrorBody),
        (status = 413, description = "Larger than `background_sound.max_bytes` (10 MiB by default)", body = ErrorBody),
        (status = 422, description = "No file, an empty file, not WAV/MP3/OGG-Vorbis/FLAC, a file that does not decode, or longer than `background_sound.max_duration_s` (600 s by default)", body = ErrorBody)
    )
)]
pub async fn upload_background_sound(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<AssistantPath>,
    req: Request,
) -> Result<Json<BackgroundSoundUpload>, ApiError> {
    let id = path.assistant_id;
    // 404 before reading a body for an assistant that is not the caller's.
    load_assistant(&state, &auth, id).await?;
    let bytes = read_sound(&state, req).await?;
    if bytes.is_empty() {
        return Err(ApiError::invalid("file", "is empty"));
    }
    if SoundFormat::sniff(&bytes).is_none() {
        return Err(ApiError::invalid(
            "file",
            "must be a WAV, MP3, OGG/Vorbis or FLAC file",
        ));
    }
    let hash = background_sound::content_hash(&bytes);
    let size_bytes = bytes.len();
    let (decoded, bytes) = {
        let kept = bytes.clone();
        let max_s = state.background_sounds.limits().max_duration_s;
        let decoded = background_sound::decode_off_task(bytes, max_s)
            .await
            .map_err(|e| match e {
                SoundError::Task => ApiError::internal("sound decoder task failed"),
                SoundError::TooLong { limit_s } => {
                    ApiError::invalid("file", format!("must be at most {limit_s} s long"))
                }
                other => ApiError::invalid("file", other.to_string()),
            })?;
        (decoded, kept)
    };
    let key = background_sound::storage_key(auth.organization_id, id, &hash, decoded.format);
    state
        .recordings
        .store_bytes(&key, &bytes)
        .await
        .map_err(ApiError::internal)?;
    let new_key = key.clone();
    let previous = save_change(&state, &auth, id, move |c| {
        c.tts_settings.background_sound.storage_key = Some(new_key.clone());
    })
    .await?;
    if previous.as_deref() != Some(key.as_str()) {
        remove_stored(&state, auth.organization_id, previous).await;
    }
    tracing::info!(
        organization_id = auth.organization_id,
        assistant_id = id,
        size_bytes,
        duration_ms = decoded.duration_ms(),
        format = decoded.format.name(),
        "background sound uploaded"
    );
    Ok(Json(BackgroundSoundUpload {
        storage_key: key,
        format: decoded.format.name().to_owned(),
        duration_ms: decoded.duration_ms(),
        sample_rate_hz: decoded.source_rate_hz,
        channels: decoded.channels,
        size_bytes,
    }))
}

/// Remove the assistant's uploaded background sound: the file is deleted and `storage_key`
/// cleared (`sound_url`, if set, is played instead). 404 when there is none.
#[utoipa::path(
    delete,
    path = "/api/v1/assistants/{assistant_id}/background-sound",
    tag = "assistants",
    security(("bearer" = [])),
    params(("assistant_id" = i64, Path, description = "Assistant id")),
    responses(
        (status = 200, description = "Removed", body = ApiResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such assistant in your organisation, or it has no uploaded sound", body = ErrorBody)
    )
)]
pub async fn delete_background_sound(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<AssistantPath>,
) -> Result<Json<ApiResponse>, ApiError> {
    let id = path.assistant_id;
    let row = load_assistant(&state, &auth, id).await?;
    let config = stored_config(&row)?;
    if config
        .tts_settings
        .background_sound
        .storage_key
        .as_deref()
        .is_none_or(|k| k.trim().is_empty())
    {
        return Err(ApiError::NotFound(format!(
            "assistant {id} has no uploaded background sound"
        )));
    }
    let previous = save_change(&state, &auth, id, |c| {
        c.tts_settings.background_sound.storage_key = None;
    })
    .await?;
    remove_stored(&state, auth.organization_id, previous).await;
    Ok(Json(ApiResponse::ok(
        format!("background sound of assistant {id} removed"),
        None,
    )))
}
