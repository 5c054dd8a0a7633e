//! An assistant's knowledge-base documents (`rag_settings`), on Burki's paths:
//! `POST /api/v1/assistants/{assistant_id}/documents/upload` (multipart: `file`, optional
//! `name`, `category`, `tags`), `GET …/documents`, `GET …/documents/{document_id}/status`,
//! `DELETE …/documents/{document_id}`, and `POST …/documents/{document_id}/process` (process
//! now, or again; the upload does it by itself when `rag_settings.auto_process`).
//!
//! Uploads are PDF, DOCX, TXT, Markdown, HTML or CSV (by extension, else the part's media
//! type; the content must match), not empty, at most `knowledge.max_upload_bytes` (413 past
//! it, counted while the body streams in). Processing runs in the background; the status
//! endpoint says where it stands. Everything is scoped by the caller's organisation: another
//! organisation's assistant or document is a 404.

use axum::Json;
use axum::Router;
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard_knowledge::DocumentFormat;
use switchboard_knowledge::format::ACCEPTED;
use switchboard_store::{
    DocumentRow, DocumentStatus, NewDocument, ms_to_rfc3339, opt_ms_to_rfc3339,
};
use utoipa::{OpenApi, ToSchema};

use crate::auth::Auth;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiPath;
use crate::knowledge::spawn_processing;
use crate::routes::ApiResponse;
use crate::routes::assistants::{AssistantPath, load_assistant, stored_config};
use crate::state::AppState;

/// Longest `name`, `category` or `tags` form field, bytes.
const MAX_TEXT_FIELD_BYTES: usize = 1024;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/assistants/{assistant_id}/documents/upload",
            // The size limit is `knowledge.max_upload_bytes`, enforced while reading.
            post(upload_document).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/v1/assistants/{assistant_id}/documents",
            get(list_documents),
        )
        .route(
            "/api/v1/assistants/{assistant_id}/documents/{document_id}",
            delete(delete_document),
        )
        .route(
            "/api/v1/assistants/{assistant_id}/documents/{document_id}/status",
            get(document_status),
        )
        .route(
            "/api/v1/assistants/{assistant_id}/documents/{document_id}/process",
            post(process_document),
        )
}

/// OpenAPI description of this module's paths.
#[derive(OpenApi)]
#[openapi(
    paths(
        upload_document,
        list_documents,
        document_status,
        delete_document,
        process_document
    ),
    components(schemas(DocumentResponse, DocumentStatusResponse, UploadForm))
)]
pub struct DocumentsApi;

/// Path of one document.
#[derive(Debug, Deserialize)]
pub struct DocumentPath {
    /// Assistant id.
    pub assistant_id: i64,
    /// Document id.
    pub document_id: i64,
}

/// The multipart form of an upload (Burki's `Body_upload_document`).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file: PDF, DOCX, TXT, Markdown, HTML or CSV.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Display name; the file name when absent.
    name: Option<String>,
    /// Free-text category.
    category: Option<String>,
    /// Free-text tags.
    tags: Option<String>,
}

/// A knowledge-base document.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentResponse {
    /// Document id.
    pub id: i64,
    /// The assistant it belongs to.
    pub assistant_id: i64,
    /// Display name.
    pub name: String,
    /// The uploaded file's name.
    pub original_filename: String,
    /// Media type, e.g. `application/pdf`.
    pub content_type: String,
    /// Size of the file, bytes.
    pub file_size: i64,
    /// Free-text category.
    pub category: Option<String>,
    /// Free-text tags.
    pub tags: Option<String>,
    /// `pending`, `processing`, `ready` or `failed`.
    #[schema(value_type = String)]
    pub processing_status: DocumentStatus,
    /// Why processing failed.
    pub processing_error: Option<String>,
    /// Searchable chunks.
    pub chunk_count: i64,
    /// Upload time (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// When processing last succeeded (RFC 3339).
    pub processed_at: Option<String>,
}

impl From<&DocumentRow> for DocumentResponse {
    fn from(d: &DocumentRow) -> Self {
        DocumentResponse {
            id: d.id,
            assistant_id: d.assistant_id,
            name: d.name.clone(),
            original_filename: d.file_name.clone(),
            content_type: d.content_type.clone(),
            file_size: d.size_bytes,
            category: d.category.clone(),
            tags: d.tags.clone(),
            processing_status: d.status,
            processing_error: d.error.clone(),
            chunk_count: d.chunk_count,
            created_at: ms_to_rfc3339(d.created_at_ms),
            updated_at: ms_to_rfc3339(d.updated_at_ms),
            processed_at: opt_ms_to_rfc3339(d.processed_at_ms),
        }
    }
}

/// Where a document's processing stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentStatusResponse {
    /// Document id.
    pub document_id: i64,
    /// `pending`, `processing`, `ready` or `failed`.
    #[schema(value_type = String)]
    pub processing_status: DocumentStatus,
    /// Why processing failed.
    pub processing_error: Option<String>,
    /// Searchable chunks.
    pub chunk_count: i64,
    /// When processing last succeeded (RFC 3339).
    pub processed_at: Option<String>,
}

/// Reads a form field whole, refusing more than `limit` bytes (413 for the file, 422 for the
/// small text fields).
async fn read_field(
    field: &mut Field<'_>,
    limit: usize,
    name: &str,
    is_file: bool,
) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| ApiError::BadRequest(format!("multipart body: {e}")))?
    {
        if out.len() + chunk.len() > limit {
            return Err(if is_file {
                ApiError::PayloadTooLarge { limit_bytes: limit }
            } else {
                ApiError::invalid(name, format!("must be at most {limit} bytes"))
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn text_field(bytes: Vec<u8>, name: &str) -> Result<Option<String>, ApiError> {
    let text =
        String::from_utf8(bytes).map_err(|_| ApiError::invalid(name, "must be UTF-8 text"))?;
    let text = text.trim().to_owned();
    Ok((!text.is_empty()).then_some(text))
}

/// Upload a document to an assistant's knowledge base. It is stored `pending` and processed in
/// the background when the assistant's `rag_settings.auto_process` is on (else call
/// `…/process`).
#[utoipa::path(
    post,
    path = "/api/v1/assistants/{assistant_id}/documents/upload",
    tag = "assistants",
    security(("bearer" = [])),
    params(("assistant_id" = i64, Path, description = "Assistant id")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Stored; processing follows", body = DocumentResponse),
        (status = 400, description = "Not a multipart body", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such assistant in your organisation", body = ErrorBody),
        (status = 413, description = "Larger than `knowledge.max_upload_bytes`", body = ErrorBody),
        (status = 422, description = "No file, an empty file, an unsupported type, or content that does not match it", body = ErrorBody)
    )
)]
pub async fn upload_document(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<AssistantPath>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<DocumentResponse>, ApiError> {
    let assistant = load_assistant(&state, &auth, path.assistant_id).await?;
    let config = stored_config(&assistant)?;
    let mut multipart = multipart
        .map_err(|e| ApiError::BadRequest(format!("expected a multipart/form-data body: {e}")))?;
    let limit = state.settings.knowledge.max_upload_bytes;
    let (mut file, mut name, mut category, mut tags) = (None, None, None, None);
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| ApiError::BadRequest(format!("multipart body: {e}")))?
    {
        let part = field.name().unwrap_or("").to_owned();
        match part.as_str() {
            "file" => {
                let file_name = field.file_name().unwrap_or("").trim().to_owned();
                let declared = field.content_type().map(str::to_owned);
                let bytes = read_field(&mut field, limit, "file", true).await?;
                file = Some((file_name, declared, bytes));
            }
            "name" => {
                name = text_field(
                    read_field(&mut field, MAX_TEXT_FIELD_BYTES, "name", false).await?,
                    "name",
                )?
            }
            "category" => {
                category = text_field(
                    read_field(&mut field, MAX_TEXT_FIELD_BYTES, "category", false).await?,
                    "category",
                )?
            }
            "tags" => {
                tags = text_field(
                    read_field(&mut field, MAX_TEXT_FIELD_BYTES, "tags", false).await?,
                    "tags",
                )?
            }
            // Unknown parts are read and ignored, bounded like the file.
            other => {
                read_field(&mut field, limit, other, true).await?;
            }
        }
    }
    let Some((file_name, declared, bytes)) = file else {
        return Err(ApiError::invalid("file", "is required"));
    };
    if bytes.is_empty() {
        return Err(ApiError::invalid("file", "is empty"));
    }
    let format = DocumentFormat::detect(&file_name, declared.as_deref()).ok_or_else(|| {
        ApiError::invalid(
            "file",
            format!("must be a {ACCEPTED} file (got `{file_name}`)"),
        )
    })?;
    if !format.matches(&bytes) {
        return Err(ApiError::invalid(
            "file",
            format!("content is not {}", format.media_type()),
        ));
    }
    let shown_name = name.unwrap_or_else(|| {
        if file_name.is_empty() {
            "document".to_owned()
        } else {
            file_name.clone()
        }
    });
    let row = state
        .store
        .create_document(&NewDocument {
            organization_id: auth.organization_id,
            assistant_id: assistant.id,
            name: shown_name,
            file_name,
            content_type: format.media_type().to_owned(),
            category,
            tags,
            content: bytes,
        })
        .await?;
    tracing::info!(
        organization_id = auth.organization_id,
        assistant_id = assistant.id,
        document_id = row.id,
        size_bytes = row.size_bytes,
        "knowledge document uploaded"
    );
    if config.rag_settings.auto_process {
        spawn_processing(&state, auth.organization_id, assistant.id, row.id);
    }
    Ok(Json(DocumentResponse::from(&row)))
}

/// List the documents of an assistant's knowledge base, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/assistants/{assistant_id}/documents",
    tag = "assistants",
    security(("bearer" = [])),
    params(("assistant_id" = i64, Path, description = "Assistant id")),
    responses(
        (status = 200, description = "The documents", body = Vec<DocumentResponse>),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such assistant in your organisation", body = ErrorBody)
    )
)]
pub async fn list_documents(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<AssistantPath>,
) -> Result<Json<Vec<DocumentResponse>>, ApiError> {
    let assistant = load_assistant(&state, &auth, path.assistant_id).await?;
    let rows = state
        .store
        .list_documents(auth.organization_id, assistant.id)
        .await?;
    Ok(Json(rows.iter().map(DocumentResponse::from).collect()))
}

async fn load_document(
    state: &AppState,
    auth: &Auth,
    path: &DocumentPath,
) -> Result<DocumentRow, ApiError> {
    state
        .store
        .get_document(auth.organization_id, path.assistant_id, path.document_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("document {} not found", path.document_id)))
}

/// The processing status of a document.
#[utoipa::path(
    get,
    path = "/api/v1/assistants/{assistant_id}/documents/{document_id}/status",
    tag = "assistants",
    security(("bearer" = [])),
    params(
        ("assistant_id" = i64, Path, description = "Assistant id"),
        ("document_id" = i64, Path, description = "Document id")
    ),
    responses(
        (status = 200, description = "Where processing stands", body = DocumentStatusResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such document in your organisation", body = ErrorBody)
    )
)]
pub async fn document_status(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<DocumentPath>,
) -> Result<Json<DocumentStatusResponse>, ApiError> {
    let d = load_document(&state, &auth, &path).await?;
    Ok(Json(DocumentStatusResponse {
        document_id: d.id,
        processing_status: d.status,
        processing_error: d.error,
        chunk_count: d.chunk_count,
        processed_at: opt_ms_to_rfc3339(d.processed_at_ms),
    }))
}

/// Delete a document with its chunks and vectors; searches stop finding it at once.
#[utoipa::path(
    delete,
    path = "/api/v1/assistants/{assistant_id}/documents/{document_id}",
    tag = "assistants",
    security(("bearer" = [])),
    params(
        ("assistant_id" = i64, Path, description = "Assistant id"),
        ("document_id" = i64, Path, description = "Document id")
    ),
    responses(
        (status = 200, description = "Deleted", body = ApiResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such document in your organisation", body = ErrorBody)
    )
)]
pub async fn delete_document(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<DocumentPath>,
) -> Result<Json<ApiResponse>, ApiError> {
    state
        .store
        .delete_document(auth.organization_id, path.assistant_id, path.document_id)
        .await
        .map_err(|e| match e {
            switchboard_store::StoreError::NotFound => {
                ApiError::NotFound(format!("document {} not found", path.document_id))
            }
            other => other.into(),
        })?;
    state
        .knowledge
        .base
        .invalidate(auth.organization_id, path.assistant_id);
    tracing::info!(
        organization_id = auth.organization_id,
        assistant_id = path.assistant_id,
        document_id = path.document_id,
        "knowledge document deleted"
    );
    Ok(Json(ApiResponse::ok(
        "document deleted",
        Some(json!({"id": path.document_id})),
    )))
}

/// Process a document now (or again, e.g. after changing `chunking_strategy` or
/// `embedding_model`), in the background; poll `…/status`.
#[utoipa::path(
    post,
    path = "/api/v1/assistants/{assistant_id}/documents/{document_id}/process",
    tag = "assistants",
    security(("bearer" = [])),
    params(
        ("assistant_id" = i64, Path, description = "Assistant id"),
        ("document_id" = i64, Path, description = "Document id")
    ),
    responses(
        (status = 202, description = "Processing started", body = DocumentResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such document in your organisation", body = ErrorBody),
        (status = 409, description = "It is being processed (a job whose heartbeat lapsed over a minute ago is taken over)", body = ErrorBody)
    )
)]
pub async fn process_document(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<DocumentPath>,
) -> Result<(StatusCode, Json<DocumentResponse>), ApiError> {
    let d = load_document(&state, &auth, &path).await?;
    let live = d.processing_heartbeat_ms.unwrap_or(d.updated_at_ms)
        >= switchboard_knowledge::process::lease_expired_before_ms();
    if d.status == DocumentStatus::Processing && live {
        return Err(ApiError::Conflict(format!(
            "document {} is being processed",
            d.id
        )));
    }
    spawn_processing(&state, auth.organization_id, d.assistant_id, d.id);
    Ok((StatusCode::ACCEPTED, Json(DocumentResponse::from(&d))))
}
