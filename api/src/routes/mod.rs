//! One module per resource; `router` wires them with the JSON error handling, and `routes`
//! builds the router and its OpenAPI document (`GET /openapi.json`) from the same list.

mod documents;
mod health;
mod instance;
mod labels;
mod metrics;
mod params;

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
    // Only the state is added here: every route is in `service`, where the test
    // `every_route_of_the_router_is_in_the_openapi_document` sees it.
    service(state.max_upload_bytes, request_timeout).with_state(state)
}

/// Every route with its fallbacks and layers, before the state. Add routes in `routes()` with
/// `routes!`, never with a plain `.route()`/`.nest()` here: the test below refuses a path that
/// the OpenAPI document does not have.
fn service(max_upload_bytes: u64, request_timeout: Duration) -> Router<AppState> {
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
}

/// The paths a router serves, read from its `Debug` text (axum has no other way to list them):
/// the quoted strings of its path router's `Node { paths: {RouteId(n): "/path", ..} }`. The
/// fallback router's catch-all paths are left out.
#[cfg(test)]
fn served_paths<S>(router: &Router<S>) -> Vec<String> {
    let text = format!("{router:?}");
    let paths_router = text.split("fallback_router:").next().unwrap_or_default();
    let mut paths: Vec<String> = paths_router
        .split("RouteId(")
        .skip(1)
        .filter_map(|part| {
            let (_, rest) = part.split_once("): \"")?;
            Some(rest.split('"').next()?.to_owned())
        })
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// Paths the router serves that the document does not describe, and the reverse.
#[cfg(test)]
fn undocumented<S>(
    router: &Router<S>,
    doc: &utoipa::openapi::OpenApi,
) -> (Vec<String>, Vec<String>) {
    let served = served_paths(router);
    let documented: Vec<String> = doc.paths.paths.keys().cloned().collect();
    (
        served
            .iter()
            .filter(|p| !documented.contains(p))
            .cloned()
            .collect(),
        documented
            .into_iter()
            .filter(|p| !served.contains(p))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use axum::routing::get;

    use super::*;

    #[test]
    fn every_route_of_the_router_is_in_the_openapi_document() {
        let router = service(1024, Duration::from_secs(1));
        let served = served_paths(&router);
        // A guard on the reading itself: if axum's Debug text changed, nothing would be found
        // and the comparison below would prove nothing.
        assert!(
            served.contains(&"/documents/{id}/labels".to_owned()),
            "{served:?}"
        );
        assert_eq!(
            undocumented(&router, &routes().1),
            (vec![], vec![]),
            "(served but not documented, documented but not served)"
        );
    }

    #[test]
    fn a_plain_route_added_beside_utoipa_is_caught() {
        let router = service(1024, Duration::from_secs(1))
            .route("/debug/secret", get(|| async { "hidden" }))
            .nest(
                "/admin",
                Router::new().route("/users", get(|| async { "" })),
            );
        let (served_only, documented_only) = undocumented(&router, &routes().1);
        assert_eq!(served_only, vec!["/admin/users", "/debug/secret"]);
        assert!(documented_only.is_empty(), "{documented_only:?}");
    }
}
