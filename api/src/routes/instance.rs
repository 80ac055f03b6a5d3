use axum::extract::State;
use axum::Json;

use crate::startup::{AppState, InstanceInfo};

/// Which replica answered, and how its startup went.
pub async fn instance(State(state): State<AppState>) -> Json<InstanceInfo> {
    Json((*state.instance).clone())
}
