//! One module per resource; `router` wires them with the JSON error handling.

mod documents;
mod health;
mod instance;
mod labels;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, put};
use axum::Router;
use tower_http::trace::TraceLayer;

use crate::error;
use crate::startup::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/instance", get(instance::instance))
        .route("/documents", get(documents::list).post(documents::create))
        .route(
            "/documents/{id}",
            get(documents::get_one).delete(documents::delete),
        )
        .route("/documents/{id}/content", get(documents::content))
        .route("/documents/{id}/labels", put(labels::put).get(labels::get))
        .route("/labels/{label}/documents", get(labels::documents))
        .fallback(error::not_found_fallback)
        .method_not_allowed_fallback(error::method_not_allowed_fallback)
        // Uploads stream with their own limit (API_MAX_UPLOAD_BYTES); this one covers any
        // buffering extractor so nothing reads an unbounded body.
        .layer(DefaultBodyLimit::max(
            usize::try_from(state.max_upload_bytes).unwrap_or(usize::MAX),
        ))
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
