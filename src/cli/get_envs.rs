//! `cortex get` with no API: the environments' APIs. `-o json|yaml` has one shape whether one
//! environment is asked or all configured ones are: a list of `{"env_name", "apis", "error"?}`
//! (cortex's shape), `error` being `{"kind", "message"}` for an environment that did not
//! answer.

use anyhow::bail;

use super::environment::{self, Target};
use super::get_tables::tables;
use super::output::structured;
use super::{failure, GetArgs};
use crate::api::{ApiResponse, ErrorBody};

/// One environment's answer.
#[derive(serde::Serialize)]
pub struct EnvApis {
    env_name: String,
    apis: Vec<ApiResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
}

/// The APIs of one environment (`-e`, or the only one configured).
pub async fn one(target: &Target, args: &GetArgs) -> anyhow::Result<String> {
    let apis = target.client.list_apis().await?;
    let answer = [EnvApis {
        env_name: target.name.clone(),
        apis,
        error: None,
    }];
    if let Some(text) = structured(args.output, args.watch, &answer)? {
        return Ok(text);
    }
    let [EnvApis { apis, .. }] = answer;
    if apis.is_empty() {
        return Ok("no apis are deployed\n".to_string());
    }
    Ok(tables(&apis.iter().collect::<Vec<_>>(), None))
}

/// With remote environments configured: every environment's APIs, with an `env` column. The
/// local server is only asked when it runs (or is the default environment).
pub async fn all(envs: &[String], args: &GetArgs) -> anyhow::Result<String> {
    // A mistyped timeout is the user's to fix, not each environment's failure to answer.
    crate::client::timeout_from_env().map_err(failure::Refusal::InvalidRequest)?;
    let mut answers = Vec::new();
    for name in envs {
        let target = match environment::connect_if_running(Some(name)).await {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                answers.push(EnvApis {
                    env_name: name.clone(),
                    apis: Vec::new(),
                    error: Some(failure::body(&e)),
                });
                continue;
            }
        };
        let (apis, error) = match target.client.list_apis().await {
            Ok(apis) => (apis, None),
            Err(e) => (
                Vec::new(),
                Some(ErrorBody {
                    kind: e.kind().to_string(),
                    message: e.to_string(),
                }),
            ),
        };
        answers.push(EnvApis {
            env_name: name.clone(),
            apis,
            error,
        });
    }
    if !answers.is_empty() && answers.iter().all(|a| a.error.is_some()) {
        let reasons: Vec<String> = answers
            .iter()
            .filter_map(|a| Some(format!("{}: {}", a.env_name, a.error.as_ref()?.message)))
            .collect();
        bail!("no environment answered:\n  {}", reasons.join("\n  "));
    }
    if let Some(text) = structured(args.output, args.watch, &answers)? {
        return Ok(text);
    }
    Ok(text(&answers))
}

fn text(answers: &[EnvApis]) -> String {
    let rows: Vec<(&str, &ApiResponse)> = answers
        .iter()
        .flat_map(|a| a.apis.iter().map(move |api| (a.env_name.as_str(), api)))
        .collect();
    let mut out = if rows.is_empty() {
        "no apis are deployed\n".to_string()
    } else {
        let apis: Vec<&ApiResponse> = rows.iter().map(|(_, a)| *a).collect();
        let envs: Vec<&str> = rows.iter().map(|(e, _)| *e).collect();
        tables(&apis, Some(&envs))
    };
    for a in answers.iter().filter(|a| a.error.is_some()) {
        out.push_str(&format!(
            "\nunable to detect apis from the {0} environment; run `cortex get --env {0}` if this is unexpected\n",
            a.env_name
        ));
    }
    out
}
