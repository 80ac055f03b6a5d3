//! What every request handler shares: the pool, the data directory, this replica's identity and
//! the request limits. Its own module so that `routes` and `startup` need not import each other.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::MySqlPool;

use crate::migrate::StartupReport;
use crate::storage::Storage;

#[derive(Clone)]
pub struct AppState {
    pub pool: MySqlPool,
    pub storage: Storage,
    pub instance: Arc<InstanceInfo>,
    pub max_upload_bytes: u64,
    /// A client silent this long mid-request is given up on (`API_CLIENT_TIMEOUT_SECS`).
    pub client_timeout: Duration,
    /// After its first `client_timeout`, an upload slower than this on average is cut off
    /// (`API_MIN_UPLOAD_BYTES_PER_SEC`).
    pub min_upload_rate: u64,
}

/// What `GET /instance` serves.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InstanceInfo {
    pub hostname: String,
    pub version: &'static str,
    pub started_at: DateTime<Utc>,
    /// Role (leader, follower, fast_path, unlocked), time waited, migrations applied.
    #[schema(value_type = Object)]
    pub startup: StartupReport,
}
