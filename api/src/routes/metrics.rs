//! `GET /metrics`: this replica's own timings in the Prometheus text format (see `crate::metrics`).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::state::AppState;

/// The Prometheus text exposition format, version 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Request durations per route, pool acquire waits, query and file-open times (histograms), and
/// the runtime's workers and the pool's connections (gauges), of this replica.
#[utoipa::path(get, path = "/metrics", tag = "meta", responses((status = 200, description = "this replica's metrics in the Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        crate::metrics::render(&state.pool),
    )
}
