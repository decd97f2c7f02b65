//! What `cortex get` shows of TrafficSplitters: the list table (`traffic splitter`, `apis`,
//! `last update`) and one splitter's apis with their weights and state, in cortex's layout.

use crate::api::ApiResponse;
use crate::client::Client;
use crate::clock::now;

use super::render;

/// `a:80 b:20`.
fn shares(api: &ApiResponse) -> String {
    api.spec
        .apis
        .iter()
        .map(|b| format!("{}:{}", b.name, b.weight))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The splitter list: `traffic splitter`, `apis`, `last update` (and `env`).
pub fn list_table(splitters: &[&ApiResponse], envs: Option<&[&str]>) -> String {
    let now = now();
    let mut headers = Vec::new();
    if envs.is_some() {
        headers.push("env");
    }
    headers.extend(["traffic splitter", "apis", "last update"]);
    let rows: Vec<Vec<String>> = splitters
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut row = Vec::new();
            if let Some(envs) = envs {
                row.push(envs.get(i).copied().unwrap_or_default().to_string());
            }
            row.extend([s.name.clone(), shares(s), render::age(s.last_updated, now)]);
            row
        })
        .collect();
    render::table(&headers, &rows)
}

/// One splitter: a row per api (`apis`, `weights`, `status`, `requested`, `last update`,
/// `avg request`, `2XX`, `5XX`), where it answers, and its configuration.
pub async fn splitter_text(client: &Client, splitter: &ApiResponse) -> String {
    let now = now();
    let headers = [
        "apis",
        "weights",
        "status",
        "requested",
        "last update",
        "avg request",
        "2XX",
        "5XX",
    ];
    let count = |n: u64| {
        if n == 0 {
            "-".to_string()
        } else {
            n.to_string()
        }
    };
    let mut rows = Vec::new();
    for backend in &splitter.spec.apis {
        let row = match client.get_api(&backend.name).await {
            Ok(api) => vec![
                backend.name.clone(),
                backend.weight.to_string(),
                api.status.to_string(),
                api.requested.to_string(),
                render::age(api.last_updated, now),
                render::latency(api.metrics.latency_ms_avg),
                count(api.metrics.code_2xx),
                count(api.metrics.code_5xx),
            ],
            Err(_) => vec![
                backend.name.clone(),
                backend.weight.to_string(),
                "not deployed".to_string(),
                "-".to_string(),
                "-".to_string(),
                "-".to_string(),
                "-".to_string(),
                "-".to_string(),
            ],
        };
        rows.push(row);
    }
    let mut out = render::table(&headers, &rows);
    out.push_str("\n\n");
    out.push_str(&format!("endpoint: {}\n", splitter.endpoint));
    out.push_str(&format!(
        "example curl: curl {} -X POST -H \"Content-Type: application/json\" -d @sample.json\n",
        splitter.endpoint
    ));
    out.push_str(&render::configuration("configuration", &splitter.spec));
    out
}
