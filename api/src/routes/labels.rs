//! Labels on documents: `PUT`/`GET /documents/{id}/labels` and `GET /labels/{label}/documents`.
//!
//! They live in their own table (migration 20250101000003), never in `documents`, so a replica
//! of the previous version serving beside this one keeps working on the same schema.

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::params::{parse_id, Page, PageParams};
use crate::error::ErrorBody;
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::state::AppState;

const MAX_LABELS: usize = 20;
const MAX_LABEL_LEN: usize = 64;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct LabelsBody {
    labels: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentLabels {
    id: String,
    labels: Vec<String>,
}

/// Replaces the document's labels with the ones given (sorted, duplicates dropped).
#[utoipa::path(
    put,
    path = "/documents/{id}/labels",
    tag = "labels",
    params(("id" = String, Path, description = "the document's id (a UUID)")),
    request_body(content = LabelsBody, description = "the labels: at most 20, each 1 to 64 characters"),
    responses(
        (status = 200, description = "the document's labels now", body = DocumentLabels),
        (status = 400, description = "not a UUID, or bad labels", body = ErrorBody),
        (status = 404, description = "no such document", body = ErrorBody),
    )
)]
pub async fn put(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> Result<Json<DocumentLabels>, ApiError> {
    let id = parse_id(&id)?;
    let LabelsBody { labels } = serde_json::from_slice(&body)
        .map_err(|e| invalid(format!(r#"the body must be {{"labels": ["a", "b"]}}: {e}"#)))?;
    let labels = validate(labels)?;
    let id = id.hyphenated().to_string();

    let mut tx = state.pool.begin().await?;
    // The row lock orders us with a concurrent DELETE of the document (whose cascade removes
    // our rows) and with another PUT on the same document.
    let exists: Option<String> =
        sqlx::query_scalar("SELECT id FROM documents WHERE id = ? FOR UPDATE")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?;
    if exists.is_none() {
        return Err(ApiError::not_found(format!("document {id} does not exist")));
    }
    sqlx::query("DELETE FROM document_labels WHERE document_id = ?")
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    if !labels.is_empty() {
        let mut insert =
            sqlx::QueryBuilder::new("INSERT INTO document_labels (document_id, label) ");
        insert.push_values(&labels, |mut row, label| {
            row.push_bind(&id).push_bind(label);
        });
        insert.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(Json(DocumentLabels { id, labels }))
}

/// The document's labels, sorted.
#[utoipa::path(
    get,
    path = "/documents/{id}/labels",
    tag = "labels",
    params(("id" = String, Path, description = "the document's id (a UUID)")),
    responses(
        (status = 200, description = "the document's labels", body = DocumentLabels),
        (status = 400, description = "not a UUID", body = ErrorBody),
        (status = 404, description = "no such document", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DocumentLabels>, ApiError> {
    let id = parse_id(&id)?.hyphenated().to_string();
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT d.id, l.label FROM documents d \
         LEFT JOIN document_labels l ON l.document_id = d.id \
         WHERE d.id = ? ORDER BY l.label",
    )
    .bind(&id)
    .fetch_all(&state.pool)
    .await?;
    if rows.is_empty() {
        return Err(ApiError::not_found(format!("document {id} does not exist")));
    }
    let labels = rows.into_iter().filter_map(|(_, label)| label).collect();
    Ok(Json(DocumentLabels { id, labels }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LabelledDocuments {
    label: String,
    /// Ids of the documents with this label, newest first.
    documents: Vec<String>,
    limit: i64,
    offset: i64,
}

/// Ids of the documents with this label, newest first.
#[utoipa::path(
    get,
    path = "/labels/{label}/documents",
    tag = "labels",
    params(
        ("label" = String, Path, description = "the label"),
        ("limit" = Option<i64>, Query, description = "1 to 100, default 20"),
        ("offset" = Option<i64>, Query, description = "at least 0, default 0"),
    ),
    responses(
        (status = 200, description = "a page of document ids", body = LabelledDocuments),
        (status = 400, description = "bad label or bad pagination", body = ErrorBody),
    )
)]
pub async fn documents(
    State(state): State<AppState>,
    ApiPath(label): ApiPath<String>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<LabelledDocuments>, ApiError> {
    let label = validate_label(label)?;
    let Page { limit, offset } = params.page()?;
    let documents = sqlx::query_scalar(
        "SELECT d.id FROM document_labels l JOIN documents d ON d.id = l.document_id \
         WHERE l.label = ? ORDER BY d.created_at DESC, d.id DESC LIMIT ? OFFSET ?",
    )
    .bind(&label)
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(LabelledDocuments {
        label,
        documents,
        limit,
        offset,
    }))
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_labels", message)
}

/// Lower-case ASCII letters, digits and `-_.:`, 1 to 64 of them; at most 20 distinct labels.
fn validate(labels: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut labels = labels
        .into_iter()
        .map(validate_label)
        .collect::<Result<Vec<_>, _>>()?;
    labels.sort();
    labels.dedup();
    if labels.len() > MAX_LABELS {
        return Err(invalid(format!(
            "a document has at most {MAX_LABELS} labels, got {}",
            labels.len()
        )));
    }
    Ok(labels)
}

fn validate_label(label: String) -> Result<String, ApiError> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.:".contains(c);
    if label.is_empty() || label.len() > MAX_LABEL_LEN || !label.chars().all(allowed) {
        return Err(invalid(format!(
            "{label:?} is not a label: use 1 to {MAX_LABEL_LEN} of a-z, 0-9, '-', '_', '.', ':'"
        )));
    }
    Ok(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_and_deduplicated_and_bad_ones_are_refused() {
        let ok = validate(vec![
            "b".into(),
            "a".into(),
            "b".into(),
            "team:x-1.2_3".into(),
        ]);
        assert_eq!(ok.unwrap(), ["a", "b", "team:x-1.2_3"]);
        for bad in ["", "Upper", "with space", "é", "a/b", &"x".repeat(65)] {
            assert!(
                validate(vec![bad.to_owned()]).is_err(),
                "{bad:?} was accepted"
            );
        }
        let many: Vec<String> = (0..21).map(|i| format!("l{i}")).collect();
        assert!(validate(many).is_err());
        let repeated: Vec<String> = (0..40).map(|i| format!("l{}", i % 20)).collect();
        assert_eq!(validate(repeated).unwrap().len(), 20);
    }
}
