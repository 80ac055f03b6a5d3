//! The api's own timings, served as `GET /metrics` in the Prometheus text format: request
//! durations per route, pool acquire waits, query and file-open times, the runtime's workers.
//!
//! One recorder per process (the `metrics` facade is global); a test binary that builds many
//! apps shares it, which only adds their requests together.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Request duration and every wait in it: from 0.25 ms (a cached read) to 10 s.
const BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0,
    2.5, 10.0,
];

pub const REQUEST_DURATION: &str = "http_request_duration_seconds";
pub const POOL_ACQUIRE: &str = "db_pool_acquire_seconds";
pub const QUERY: &str = "db_query_seconds";
pub const FILE_OPEN: &str = "storage_open_seconds";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; ours then stays empty.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The text of `GET /metrics`, with the runtime's and the pool's gauges as of now.
pub fn render(pool: &sqlx::MySqlPool) -> String {
    let handle = handle();
    let runtime = tokio::runtime::Handle::current().metrics();
    metrics::gauge!("tokio_workers").set(runtime.num_workers() as f64);
    metrics::gauge!("tokio_alive_tasks").set(runtime.num_alive_tasks() as f64);
    metrics::gauge!("tokio_global_queue_depth").set(runtime.global_queue_depth() as f64);
    metrics::gauge!("db_pool_connections").set(f64::from(pool.size()));
    metrics::gauge!("db_pool_idle_connections").set(pool.num_idle() as f64);
    handle.run_upkeep();
    handle.render()
}

/// Records how long each request took until its response head, by route template, method and
/// status (a streamed body's bytes come after).
pub async fn record_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    metrics::histogram!(
        REQUEST_DURATION,
        "route" => route,
        "method" => method,
        "status" => response.status().as_u16().to_string()
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// Records the seconds since `started` in the histogram `name` with the label `what`.
pub fn since(name: &'static str, what: &'static str, started: Instant) {
    metrics::histogram!(name, "what" => what).record(started.elapsed().as_secs_f64());
}
