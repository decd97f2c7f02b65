use axum::Json;

use crate::api::{Health, ServerInfo};
use crate::server::auth::AuthUser;

pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_string(),
        version: crate::VERSION.to_string(),
        pid: std::process::id(),
    })
}

pub async fn info(AuthUser(user): AuthUser) -> Json<ServerInfo> {
    Json(ServerInfo {
        version: crate::VERSION.to_string(),
        username: user.username,
        admin: user.admin,
    })
}
