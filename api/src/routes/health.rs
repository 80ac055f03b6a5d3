//! `/healthz` (liveness) and `/readyz` (readiness: the database and the data directory).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::{error_body, ErrorBody};
use crate::state::AppState;

/// The container healthcheck gives up after a few seconds; answer well before that.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness: the process answers. No dependencies, on purpose.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "the process is up", body = Object)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers `SELECT 1` and the data directory takes a write.
///
/// Any client can call this, so the answer names only what is wrong, in short codes
/// (`database_unavailable`, `data_dir_unwritable`); the detail (the server's error, paths,
/// uids, the fix) goes to the log.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "ready", body = Object),
        (status = 503, description = "not ready: short codes only", body = ErrorBody),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let database = async {
        match tokio::time::timeout(PROBE_TIMEOUT, sqlx::query("SELECT 1").execute(&state.pool))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("database: {e}")),
            Err(_) => Err(format!(
                "database: no answer within {}s",
                PROBE_TIMEOUT.as_secs()
            )),
        }
        .map_err(|detail| ("database_unavailable", detail))
    };
    let disk = async {
        match tokio::time::timeout(PROBE_TIMEOUT, state.storage.probe()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!(
                "data directory {}: no write within {}s",
                state.storage.root().display(),
                PROBE_TIMEOUT.as_secs()
            )),
        }
        .map_err(|detail| ("data_dir_unwritable", detail))
    };
    let (database, disk) = tokio::join!(database, disk);
    let problems: Vec<(&str, String)> = [database, disk]
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if problems.is_empty() {
        return (StatusCode::OK, Json(json!({ "status": "ready" }))).into_response();
    }
    let details: Vec<&str> = problems.iter().map(|(_, d)| d.as_str()).collect();
    tracing::warn!(reason = %details.join("; "), "not ready");
    let codes: Vec<&str> = problems.iter().map(|(code, _)| *code).collect();
    error_body(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        &format!("{}; the details are in the server log", codes.join(", ")),
    )
}
