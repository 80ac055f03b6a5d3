//! `/instance`: which replica answered and how its startup went.

use axum::extract::State;
use axum::Json;

use crate::state::{AppState, InstanceInfo};

/// Which replica answered, and how its startup went.
#[utoipa::path(get, path = "/instance", tag = "health", responses((status = 200, description = "this replica", body = InstanceInfo)))]
pub async fn instance(State(state): State<AppState>) -> Json<InstanceInfo> {
    Json((*state.instance).clone())
}
