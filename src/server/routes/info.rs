use axum::extract::State;
use axum::Json;

use crate::api::{Health, ServerInfo};
use crate::server::auth::AuthUser;
use crate::server::state::AppState;

pub async fn healthz(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".to_string(),
        version: crate::VERSION.to_string(),
        pid: std::process::id(),
        isolation: Some(state.isolation.as_ref().clone()),
        engine: Some(state.engine.describe()),
    })
}

pub async fn info(AuthUser(user): AuthUser) -> Json<ServerInfo> {
    Json(ServerInfo {
        version: crate::VERSION.to_string(),
        username: user.username,
        admin: user.admin,
    })
}
