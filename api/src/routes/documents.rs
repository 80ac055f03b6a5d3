//! `/documents`: metadata rows in the database, bytes in the shared data directory.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{NaiveDateTime, SubsecRound, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use uuid::Uuid;

use std::time::Instant;

use super::params::{parse_id, Page, PageParams};
use crate::error::{ApiError, ApiPath, ApiQuery, ErrorBody};
use crate::metrics;
use crate::state::AppState;

const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
const MAX_NAME_CHARS: usize = 255;
const MAX_CONTENT_TYPE_LEN: usize = 255;

#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Document {
    pub id: String,
    pub name: String,
    pub size: i64,
    pub sha256: String,
    pub content_type: String,
    #[serde(serialize_with = "as_utc")]
    pub created_at: NaiveDateTime,
    pub stored_by: String,
}

/// `created_at` is stored as a UTC `DATETIME(6)`; serve it as RFC 3339 with `Z`.
fn as_utc<S: serde::Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
    t.and_utc().serialize(s)
}

#[derive(Debug, Deserialize)]
pub struct CreateParams {
    name: Option<String>,
}

#[utoipa::path(
    post,
    path = "/documents",
    tag = "documents",
    params(("name" = String, Query, description = "the document's name (no path separators)")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the document's bytes; its Content-Type is kept"),
    responses(
        (status = 201, description = "stored", body = Document),
        (status = 400, description = "bad name, empty body or bad query", body = ErrorBody),
        (status = 408, description = "the upload stalled, was too slow or outlasted the request deadline", body = ErrorBody),
        (status = 413, description = "larger than API_MAX_UPLOAD_BYTES", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<CreateParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Document>), ApiError> {
    let name = validate_name(params.name)?;
    let content_type = content_type(&headers)?;
    let limit = state.max_upload_bytes;
    match declared_length(&headers)? {
        Some(0) => return Err(empty_body()),
        Some(n) if n > limit => return Err(too_large(limit)),
        _ => {}
    }

    // Stream to a temporary file so memory stays flat whatever the upload size.
    let mut upload = state.storage.begin_upload().await?;
    let mut stream = body.into_data_stream();
    // A client that stops sending mid-upload, or drips a byte now and then, must not hold its
    // connection, its temp file and a stopping replica's shutdown forever.
    let idle = state.client_timeout;
    let started = std::time::Instant::now();
    while let Some(chunk) = tokio::time::timeout(idle, stream.next())
        .await
        .map_err(|_| stalled(idle))?
    {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(
                "invalid_body",
                format!("could not read the request body: {e}"),
            )
        })?;
        if upload.size() + chunk.len() as u64 > limit {
            return Err(too_large(limit));
        }
        upload.write(&chunk).await?;
        let elapsed = started.elapsed();
        if elapsed > idle
            && (upload.size() as f64) < state.min_upload_rate as f64 * elapsed.as_secs_f64()
        {
            return Err(too_slow(state.min_upload_rate));
        }
    }
    if upload.size() == 0 {
        return Err(empty_body());
    }

    // From here on the client may hang up (hyper then drops this handler): the rename and the
    // INSERT run to completion in a task of their own, so bytes never stay without their row.
    let id = Uuid::new_v4();
    let stored_by = state.instance.hostname.clone();
    let finishing = tokio::spawn(async move {
        let stored = upload.commit(&state.storage, id).await?;
        let document = Document {
            id: id.hyphenated().to_string(),
            name,
            size: i64::try_from(stored.size).map_err(|e| ApiError::Internal(e.into()))?,
            sha256: stored.sha256,
            content_type,
            created_at: Utc::now().naive_utc().trunc_subsecs(6),
            stored_by,
        };
        insert(&state, &document).await?;
        Ok::<_, ApiError>(document)
    });
    let document = finishing
        .await
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("storing the upload")))??;
    Ok((StatusCode::CREATED, Json(document)))
}

/// Insert the row of bytes already in `documents/`. An error does not prove the row is absent:
/// the server may have committed and only its reply was lost (a restart, a reset connection).
/// So look before removing the bytes; if even that fails, keep them (a file without a row is
/// harmless, a row without its file is a broken document).
async fn insert(state: &AppState, document: &Document) -> Result<(), ApiError> {
    let inserted = sqlx::query(
        "INSERT INTO documents (id, name, size, sha256, content_type, created_at, stored_by) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&document.id)
    .bind(&document.name)
    .bind(document.size)
    .bind(&document.sha256)
    .bind(&document.content_type)
    .bind(document.created_at)
    .bind(&document.stored_by)
    .execute(&state.pool)
    .await;
    let Err(error) = inserted else {
        return Ok(());
    };
    let id = &document.id;
    let exists: Result<Option<i64>, _> =
        sqlx::query_scalar("SELECT CAST(1 AS SIGNED) FROM documents WHERE id = ?")
            .bind(id)
            .fetch_optional(&state.pool)
            .await;
    match exists {
        Ok(Some(_)) => {
            tracing::warn!(%id, error = %error, "the INSERT reported an error but its row is there (the reply was lost); the document is stored");
            Ok(())
        }
        Ok(None) => {
            if let Ok(uuid) = Uuid::try_parse(id) {
                if let Err(remove) = state.storage.remove(uuid).await {
                    tracing::warn!(%id, error = %remove, "could not remove bytes after a failed insert");
                }
            }
            Err(error.into())
        }
        Err(check) => {
            tracing::warn!(%id, error = %error, check = %check, "cannot tell whether the row was inserted; keeping its bytes");
            Err(error.into())
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentPage {
    documents: Vec<Document>,
    limit: i64,
    offset: i64,
    total: i64,
}

#[utoipa::path(
    get,
    path = "/documents",
    tag = "documents",
    params(
        ("limit" = Option<i64>, Query, description = "1 to 100, default 20"),
        ("offset" = Option<i64>, Query, description = "at least 0, default 0"),
    ),
    responses(
        (status = 200, description = "a page of documents, newest first", body = DocumentPage),
        (status = 400, description = "bad pagination", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<DocumentPage>, ApiError> {
    let Page { limit, offset } = params.page()?;
    let documents = sqlx::query_as::<_, Document>(
        "SELECT id, name, size, sha256, content_type, created_at, stored_by FROM documents \
         ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
    )
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.pool)
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM documents")
        .fetch_one(&state.pool)
        .await?;
    Ok(Json(DocumentPage {
        documents,
        limit,
        offset,
        total,
    }))
}

#[utoipa::path(
    get,
    path = "/documents/{id}",
    tag = "documents",
    params(("id" = String, Path, description = "the document's id (a UUID)")),
    responses(
        (status = 200, description = "the document's metadata", body = Document),
        (status = 400, description = "not a UUID", body = ErrorBody),
        (status = 404, description = "no such document", body = ErrorBody),
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Document>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(find(&state, id).await?))
}

#[utoipa::path(
    get,
    path = "/documents/{id}/content",
    tag = "documents",
    params(("id" = String, Path, description = "the document's id (a UUID)")),
    responses(
        (status = 200, description = "the bytes, with the Content-Type they were stored with", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, description = "not a UUID", body = ErrorBody),
        (status = 404, description = "no such document", body = ErrorBody),
    )
)]
pub async fn content(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let document = find(&state, id).await?;
    let started = Instant::now();
    let opened = tokio::fs::File::open(state.storage.document_path(id)).await;
    metrics::since(metrics::FILE_OPEN, "document", started);
    let file = match opened {
        Ok(file) => file,
        // Deleted by another request between our SELECT and open.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found(format!("document {id} does not exist")))
        }
        Err(e) => return Err(e.into()),
    };
    let stream = futures_util::stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 64 * 1024];
        let n = file.read(&mut buf).await?;
        buf.truncate(n);
        Ok::<_, std::io::Error>((n > 0).then(|| (Bytes::from(buf), file)))
    });
    let content_type = HeaderValue::from_str(&document.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static(DEFAULT_CONTENT_TYPE));
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_LENGTH, HeaderValue::from(document.size)),
            // Stored bytes are user content: never let a browser sniff or run them.
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; sandbox"),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[utoipa::path(
    delete,
    path = "/documents/{id}",
    tag = "documents",
    params(("id" = String, Path, description = "the document's id (a UUID)")),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "not a UUID", body = ErrorBody),
        (status = 404, description = "no such document", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    let deleted = sqlx::query("DELETE FROM documents WHERE id = ?")
        .bind(id.hyphenated().to_string())
        .execute(&state.pool)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("document {id} does not exist")));
    }
    // Row first, then bytes: a reader never finds a row without its file. A leftover file
    // (if removal fails) is unreachable and harmless.
    if let Err(e) = state.storage.remove(id).await {
        tracing::warn!(%id, error = %e, "row deleted but its bytes could not be removed");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// One document's row; the pool wait and the query are timed apart (`GET /metrics`).
async fn find(state: &AppState, id: Uuid) -> Result<Document, ApiError> {
    let started = Instant::now();
    let mut connection = state.pool.acquire().await?;
    metrics::since(metrics::POOL_ACQUIRE, "find_document", started);
    let started = Instant::now();
    let row = sqlx::query_as::<_, Document>(
        "SELECT id, name, size, sha256, content_type, created_at, stored_by FROM documents \
         WHERE id = ?",
    )
    .bind(id.hyphenated().to_string())
    .fetch_optional(&mut *connection)
    .await?;
    metrics::since(metrics::QUERY, "find_document", started);
    row.ok_or_else(|| ApiError::not_found(format!("document {id} does not exist")))
}

fn validate_name(name: Option<String>) -> Result<String, ApiError> {
    let invalid = |why: &str| ApiError::bad_request("invalid_name", why.to_owned());
    let name = name.ok_or_else(|| invalid("the query parameter `name` is required"))?;
    if name.trim().is_empty() {
        return Err(invalid("name must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(invalid("name must be at most 255 characters"));
    }
    if name.contains(['/', '\\']) || name.contains("..") || name == "." {
        return Err(invalid("name must not contain path separators or `..`"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("name must not contain control characters"));
    }
    Ok(name)
}

fn content_type(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(DEFAULT_CONTENT_TYPE.to_owned());
    };
    let invalid = || {
        ApiError::bad_request(
            "invalid_content_type",
            format!("Content-Type must be printable ASCII of at most {MAX_CONTENT_TYPE_LEN} bytes"),
        )
    };
    let value = value.to_str().map_err(|_| invalid())?.trim();
    if value.len() > MAX_CONTENT_TYPE_LEN {
        return Err(invalid());
    }
    Ok(if value.is_empty() {
        DEFAULT_CONTENT_TYPE.to_owned()
    } else {
        value.to_owned()
    })
}

fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    headers
        .get(header::CONTENT_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_body", "Content-Length is not a number")
                })
        })
        .transpose()
}

fn empty_body() -> ApiError {
    ApiError::bad_request(
        "empty_body",
        "the request body (the document's bytes) is empty",
    )
}

fn stalled(idle: std::time::Duration) -> ApiError {
    ApiError::client(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "no bytes of the upload arrived for {} s (API_CLIENT_TIMEOUT_SECS); send the body without pauses",
            idle.as_secs()
        ),
    )
}

fn too_slow(rate: u64) -> ApiError {
    ApiError::client(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "the upload arrives slower than {rate} bytes/s on average (API_MIN_UPLOAD_BYTES_PER_SEC)"
        ),
    )
}

fn too_large(limit: u64) -> ApiError {
    ApiError::client(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the document is larger than the limit of {limit} bytes (API_MAX_UPLOAD_BYTES)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_paths_controls_or_bad_lengths_are_rejected() {
        for bad in [
            None,
            Some(""),
            Some("   "),
            Some("a/b"),
            Some("a\\b"),
            Some(".."),
            Some("../etc/passwd"),
            Some("."),
            Some("nul\0byte"),
            Some("tab\there"),
        ] {
            let result = validate_name(bad.map(str::to_owned));
            assert!(result.is_err(), "{bad:?} was accepted");
        }
        assert!(validate_name(Some("é".repeat(255))).is_ok());
        assert!(validate_name(Some("é".repeat(256))).is_err());
        assert_eq!(
            validate_name(Some("report v2.pdf".into())).unwrap(),
            "report v2.pdf"
        );
    }
}
