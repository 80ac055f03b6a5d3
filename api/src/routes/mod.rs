//! One module per resource; `router` wires them with the JSON error handling, and `routes`
//! builds the router and its OpenAPI document (`GET /openapi.json`) from the same list.

mod documents;
mod health;
mod instance;
mod labels;
mod metrics;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::{Json, Router};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error;
use crate::state::AppState;

/// The OpenAPI document's header; the paths come from the handlers' `#[utoipa::path]`.
#[derive(utoipa::OpenApi)]
#[openapi(info(
    title = "scaling-api",
    description = "A document store run as N identical replicas: metadata in MySQL, bytes in a shared directory."
))]
struct ApiDoc;

/// Every route, registered once: `routes!` puts each handler in the router and its
/// `#[utoipa::path]` in the OpenAPI document, so the two cannot drift apart.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(instance::instance))
        .routes(routes!(documents::list, documents::create))
        .routes(routes!(documents::get_one, documents::delete))
        .routes(routes!(documents::content))
        .routes(routes!(labels::put, labels::get))
        .routes(routes!(labels::documents))
        .routes(routes!(openapi_json))
        .routes(routes!(metrics::metrics))
        .split_for_parts();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    (router, api)
}

/// The OpenAPI document of this api (this route included).
#[utoipa::path(get, path = "/openapi.json", tag = "meta", responses((status = 200, description = "the OpenAPI 3.1 document", body = Object)))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(routes().1)
}

/// The api's routes; a request not answered within `request_timeout` (`API_REQUEST_TIMEOUT_SECS`,
/// an upload included) gets 408 `request_timeout`.
pub fn router(state: AppState, request_timeout: Duration) -> Router {
    let max_upload_bytes = state.max_upload_bytes;
    routes()
        .0
        .fallback(error::not_found_fallback)
        .method_not_allowed_fallback(error::method_not_allowed_fallback)
        // Uploads stream with their own limit (API_MAX_UPLOAD_BYTES); this one covers any
        // buffering extractor so nothing reads an unbounded body.
        .layer(DefaultBodyLimit::max(
            usize::try_from(max_upload_bytes).unwrap_or(usize::MAX),
        ))
        .layer(axum::middleware::from_fn(crate::metrics::record_request))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
