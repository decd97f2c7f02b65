//! Planning: an API version (its spec and unpacked bundle) → the [`ReplicaPlan`] its replicas
//! run. This is where the worker protocol's environment is written: what the python shim and
//! command predictors read (`CORTEX_*`), the predictor's own `env` and `.env`, `PYTHONPATH`.
//! Pure: the caller reads `.env`, the server's own environment and issues the job token.

use std::path::{Path, PathBuf};

use crate::engine::{Purpose, ReplicaAccess, ReplicaPlan};
use crate::spec::{ApiSpec, Predictor, PredictorType};

/// What every plan of one server shares.
#[derive(Debug, Clone)]
pub struct PlanContext {
    /// How replicas reach the server (`CORTEX_SERVER_URL`).
    pub server_url: String,
    /// The entry file of the python shim the server installed.
    pub shim_path: PathBuf,
    /// Where `requirements.txt` virtualenvs are cached, one directory per model
    /// (`CORTEX_VENVS_DIR` is the model's): a tenant never builds or reads another's.
    pub venvs_dir: PathBuf,
    /// The python interpreter that runs the shim.
    pub python: String,
    /// The installer of `conda-packages.txt` packages, if the machine has one.
    pub conda: Option<String>,
    /// The server's own `PYTHONPATH`, which replicas' paths extend.
    pub inherited_pythonpath: Option<String>,
}

impl PlanContext {
    /// The context of a server with this shim, virtualenv directory and interpreter, in this
    /// process's environment (`PYTHONPATH`).
    pub fn from_env(
        server_url: String,
        shim_path: PathBuf,
        venvs_dir: PathBuf,
        python: String,
        conda: Option<String>,
    ) -> PlanContext {
        PlanContext {
            server_url,
            shim_path,
            venvs_dir,
            python,
            conda,
            inherited_pythonpath: std::env::var("PYTHONPATH").ok(),
        }
    }
}

/// One version of an API to plan for.
#[derive(Debug, Clone, Copy)]
pub struct Version<'a> {
    pub spec: &'a ApiSpec,
    /// Its predictor (what a TrafficSplitter, which runs nothing, has none of).
    pub predictor: &'a Predictor,
    /// The unpacked bundle: the replicas' working directory.
    pub project_dir: &'a Path,
    /// The text of the project's top-level `.env`, if it has one.
    pub dotenv: Option<&'a str>,
    /// The interpreter its project asks for (`conda-packages.txt`), instead of the server's.
    pub python: Option<&'a str>,
    /// The project has a `requirements.txt` or a `dependencies.sh`: a python worker prepares
    /// its virtualenv first (`--prepare`), outside its memory limit. An onnx worker always
    /// does (onnxruntime and numpy, and a model given by URL).
    pub prepares: bool,
    /// The version's hash (`CORTEX_API_VERSION`): an onnx model given by URL is downloaded
    /// once per version.
    pub version: &'a str,
    /// The version's job token (`CORTEX_JOB_TOKEN`).
    pub job_token: &'a str,
    /// The model it is a version of (`CORTEX_MODEL_ID`).
    pub model_id: &'a str,
}

/// The plan of a worker of `version` with id `replica_id`.
pub fn plan(
    ctx: &PlanContext,
    version: Version<'_>,
    replica_id: String,
    purpose: Purpose,
) -> ReplicaPlan {
    let (spec, predictor, project_dir) = (version.spec, version.predictor, version.project_dir);
    let venvs_dir = model_venvs(&ctx.venvs_dir, version.model_id);
    let mut env = worker_env(ctx, &version, &venvs_dir);
    let mut access = ReplicaAccess {
        read: vec![project_dir.to_path_buf()],
        write: Vec::new(),
    };
    let argv = match predictor.kind {
        PredictorType::Python | PredictorType::Onnx => {
            shim_worker(ctx, &version, venvs_dir, &mut env, &mut access)
        }
        PredictorType::Command => predictor.command.clone().unwrap_or_default(),
    };
    // onnx: onnxruntime and numpy go into the API's virtualenv (and a URL's model is fetched)
    // before the worker starts, whatever the project has.
    let prepares = match predictor.kind {
        PredictorType::Python => version.prepares,
        PredictorType::Onnx => true,
        PredictorType::Command => false,
    };
    let prepare = prepares.then(|| {
        let mut prepare = argv.clone();
        prepare.push("--prepare".to_string());
        prepare
    });
    ReplicaPlan {
        api: spec.name.clone(),
        replica_id,
        purpose,
        argv,
        cwd: project_dir.to_path_buf(),
        env,
        // The shim serves on the socket it is handed; a command binds its port itself.
        takes_socket: predictor.kind.runs_shim(),
        mem_limit: spec.compute.mem.as_ref().map(|m| m.bytes),
        cpu_millis: spec.compute.cpu.map(|c| c.millicores()),
        gpus: spec.compute.gpu,
        prepare,
        access,
    }
}

/// What every worker of `version` has in its environment: the API's `env`, then `.env` over
/// it (as cortex 0.2x sourced it after: `.env` wins), the `CORTEX_*` variables, and a
/// `PYTHONPATH` that starts with the project.
fn worker_env(ctx: &PlanContext, version: &Version<'_>, venvs_dir: &Path) -> Vec<(String, String)> {
    let (spec, predictor) = (version.spec, version.predictor);
    let mut env: Vec<(String, String)> = predictor
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(text) = version.dotenv {
        let from_file = super::dotenv::parse(text, &env);
        env.extend(from_file);
    }
    let project = version.project_dir.display().to_string();
    env.extend([
        ("CORTEX_API_NAME".to_string(), spec.name.clone()),
        ("CORTEX_PROJECT_DIR".to_string(), project),
        (
            "CORTEX_JOB_TOKEN".to_string(),
            version.job_token.to_string(),
        ),
        ("CORTEX_MODEL_ID".to_string(), version.model_id.to_string()),
        ("CORTEX_SERVER_URL".to_string(), ctx.server_url.clone()),
        ("PYTHONUNBUFFERED".to_string(), "1".to_string()),
        (
            "CORTEX_THREADS_PER_PROCESS".to_string(),
            predictor.threads_per_process.to_string(),
        ),
        (
            "CORTEX_PROCESSES_PER_REPLICA".to_string(),
            predictor.processes_per_replica.to_string(),
        ),
        (
            "CORTEX_VENVS_DIR".to_string(),
            venvs_dir.display().to_string(),
        ),
    ]);
    if let Some(conda) = &ctx.conda {
        env.push(("CORTEX_CONDA".to_string(), conda.clone()));
    }
    set_python_path(ctx, version, &mut env);
    env
}

/// `PYTHONPATH`: the project, the spec's `python_path`, then one the spec's env or `.env` gave
/// (it extends ours rather than replacing it; the last one given), then the server's own.
fn set_python_path(ctx: &PlanContext, version: &Version<'_>, env: &mut Vec<(String, String)>) {
    let project_dir = version.project_dir;
    let mut python_path = vec![project_dir.display().to_string()];
    if let Some(extra) = &version.predictor.python_path {
        python_path.push(project_dir.join(extra).display().to_string());
    }
    let user_paths: Vec<String> = env
        .iter()
        .filter(|(k, _)| k == "PYTHONPATH")
        .map(|(_, v)| v.clone())
        .collect();
    env.retain(|(k, _)| k != "PYTHONPATH");
    python_path.extend(user_paths.into_iter().rev().take(1));
    if let Some(existing) = &ctx.inherited_pythonpath {
        python_path.push(existing.clone());
    }
    env.push(("PYTHONPATH".to_string(), python_path.join(":")));
}

/// A python or onnx worker: the shim under the server's python (or the project's own), what
/// it is told of its predictor and models, and what it may read and write (the shim, the
/// API's virtualenvs, the project's interpreter's installation).
fn shim_worker(
    ctx: &PlanContext,
    version: &Version<'_>,
    venvs_dir: PathBuf,
    env: &mut Vec<(String, String)>,
    access: &mut ReplicaAccess,
) -> Vec<String> {
    let predictor = version.predictor;
    if predictor.kind == PredictorType::Onnx {
        env.push(("CORTEX_PREDICTOR_TYPE".to_string(), "onnx".to_string()));
    }
    if let Some(models) = models_env(predictor) {
        env.push(("CORTEX_MODELS".to_string(), models));
        env.push((
            "CORTEX_API_VERSION".to_string(),
            version.version.to_string(),
        ));
    }
    env.push((
        "CORTEX_PREDICTOR_PATH".to_string(),
        predictor.path.clone().unwrap_or_default(),
    ));
    env.push((
        "CORTEX_PREDICTOR_CONFIG".to_string(),
        serde_json::Value::Object(predictor.config.clone()).to_string(),
    ));
    access
        .read
        .extend(ctx.shim_path.parent().map(Path::to_path_buf));
    access.write.push(venvs_dir);
    // A project's own interpreter: its installation may be read (`<prefix>/bin/python`).
    if let Some(p) = version.python {
        let prefix = Path::new(p).parent().and_then(Path::parent);
        access.read.extend(prefix.map(Path::to_path_buf));
    }
    vec![
        version
            .python
            .map_or_else(|| ctx.python.clone(), str::to_string),
        "-u".to_string(),
        ctx.shim_path.display().to_string(),
    ]
}

/// Where a model's virtualenvs (and its downloaded models) are, under the server's `venvs`.
pub fn model_venvs(venvs: &Path, model_id: &str) -> PathBuf {
    venvs.join(path_safe(model_id))
}

/// `id` as one path component: anything but `[A-Za-z0-9._-]` becomes `_` (model ids are UUIDs).
fn path_safe(id: &str) -> String {
    let safe: String = id
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    if safe.is_empty() {
        "_".to_string()
    } else {
        safe
    }
}

/// What makes a worker of a batch job differ from its API's template plan.
#[derive(Debug, Clone, Copy)]
pub struct JobWorker<'a> {
    pub job_id: &'a str,
    /// The worker's number in the job, from 0.
    pub index: u32,
    /// The seed's job fields, as JSON (the shim passes them to `__init__` as `job_spec`).
    pub job_spec_json: &'a str,
    /// The job's config merged over `predictor.config`.
    pub config: &'a serde_json::Map<String, serde_json::Value>,
    /// The job's own token (`CORTEX_JOB_TOKEN`).
    pub job_token: &'a str,
}

/// The id of worker `index` of job `job_id`: `<job_id>-<index>`.
pub fn worker_id(job_id: &str, index: u32) -> String {
    format!("{job_id}-{index}")
}

/// The plan of one worker of a batch job, from its API's template plan: the job's config, its
/// token, and `CORTEX_JOB_ID` / `CORTEX_JOB_SPEC` (the python shim then runs in batch mode;
/// a command predictor reads them if it wants). It may read `data_root` (`--data-root`).
pub fn for_job(
    template: &ReplicaPlan,
    job: JobWorker<'_>,
    data_root: Option<&Path>,
) -> ReplicaPlan {
    let mut plan = template.clone();
    plan.access.read.extend(data_root.map(Path::to_path_buf));
    plan.replica_id = worker_id(job.job_id, job.index);
    plan.purpose = Purpose::BatchWorker {
        job_id: job.job_id.to_string(),
    };
    let config = serde_json::Value::Object(job.config.clone()).to_string();
    let set = |env: &mut Vec<(String, String)>, key: &str, value: String| {
        env.retain(|(k, _)| k != key);
        env.push((key.to_string(), value));
    };
    if plan.env.iter().any(|(k, _)| k == "CORTEX_PREDICTOR_CONFIG") {
        set(&mut plan.env, "CORTEX_PREDICTOR_CONFIG", config);
    }
    set(&mut plan.env, "CORTEX_JOB_TOKEN", job.job_token.to_string());
    set(&mut plan.env, "CORTEX_JOB_ID", job.job_id.to_string());
    set(
        &mut plan.env,
        "CORTEX_JOB_SPEC",
        job.job_spec_json.to_string(),
    );
    set(&mut plan.env, "CORTEX_KIND", "BatchAPI".to_string());
    plan
}

/// `CORTEX_MODELS`: the predictor's `model_path` or `models` as the runtime reads them.
fn models_env(predictor: &crate::spec::Predictor) -> Option<String> {
    let value = match (&predictor.model_path, &predictor.models) {
        (Some(path), _) => serde_json::json!({ "model_path": path }),
        (None, Some(models)) => serde_json::to_value(models).ok()?,
        (None, None) => return None,
    };
    Some(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_worker_gets_the_job_config_spec_and_token() {
        let yaml = "- name: sum\n  kind: BatchAPI\n  predictor: {type: python, path: p.py, config: {a: 1, b: 2}}\n";
        let spec = crate::spec::parse_str(yaml, "cortex.yaml")
            .unwrap()
            .remove(0);
        let ctx = PlanContext {
            server_url: "http://127.0.0.1:1".into(),
            shim_path: "/shim.py".into(),
            venvs_dir: "/venvs".into(),
            python: "python3".into(),
            conda: None,
            inherited_pythonpath: None,
        };
        let template = plan(
            &ctx,
            Version {
                spec: &spec,
                predictor: spec.predictor.as_ref().unwrap(),
                project_dir: Path::new("/p"),
                dotenv: None,
                python: None,
                prepares: false,
                version: "v1",
                job_token: "deploy-token",
                model_id: "m",
            },
            String::new(),
            Purpose::Realtime,
        );
        let mut config = spec.predictor.as_ref().unwrap().config.clone();
        config.insert("b".into(), serde_json::json!(3));
        let w = for_job(
            &template,
            JobWorker {
                job_id: "7fff",
                index: 2,
                job_spec_json: "{\"job_id\":\"7fff\"}",
                config: &config,
                job_token: "job-token",
            },
            Some(Path::new("/data")),
        );
        let env = |k: &str| {
            let found: Vec<&str> = w
                .env
                .iter()
                .filter(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .collect();
            assert_eq!(found.len(), 1, "{k} once");
            found[0].to_string()
        };
        assert_eq!(w.replica_id, "7fff-2");
        assert_eq!(
            w.purpose,
            Purpose::BatchWorker {
                job_id: "7fff".into()
            }
        );
        assert_eq!(env("CORTEX_PREDICTOR_CONFIG"), "{\"a\":1,\"b\":3}");
        assert_eq!(env("CORTEX_JOB_TOKEN"), "job-token");
        assert_eq!(env("CORTEX_JOB_SPEC"), "{\"job_id\":\"7fff\"}");
        assert_eq!(env("CORTEX_KIND"), "BatchAPI");
        assert_eq!(env("CORTEX_VENVS_DIR"), "/venvs/m");
        assert_eq!(
            w.access,
            ReplicaAccess {
                read: vec!["/p".into(), "/".into(), "/data".into()],
                write: vec!["/venvs/m".into()],
            }
        );
    }

    #[test]
    fn an_onnx_worker_runs_the_shim_and_always_prepares() {
        let yaml = "- name: iris\n  kind: RealtimeAPI\n  predictor: {type: onnx, path: p.py, model_path: 'http://h/m.onnx'}\n";
        let spec = crate::spec::parse_str(yaml, "cortex.yaml")
            .unwrap()
            .remove(0);
        let ctx = PlanContext {
            server_url: "http://127.0.0.1:1".into(),
            shim_path: "/shim/cortex_shim.py".into(),
            venvs_dir: "/venvs".into(),
            python: "python3".into(),
            conda: None,
            inherited_pythonpath: None,
        };
        let p = plan(
            &ctx,
            Version {
                spec: &spec,
                predictor: spec.predictor.as_ref().unwrap(),
                project_dir: Path::new("/p"),
                dotenv: None,
                python: None,
                prepares: false,
                version: "abc123",
                job_token: "t",
                model_id: "m",
            },
            "abc1-0".into(),
            Purpose::Realtime,
        );
        let env = |k: &str| {
            p.env
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(env("CORTEX_PREDICTOR_TYPE").as_deref(), Some("onnx"));
        assert_eq!(
            env("CORTEX_MODELS").as_deref(),
            Some(r#"{"model_path":"http://h/m.onnx"}"#)
        );
        assert_eq!(env("CORTEX_API_VERSION").as_deref(), Some("abc123"));
        assert_eq!(env("CORTEX_PREDICTOR_PATH").as_deref(), Some("p.py"));
        assert!(p.takes_socket);
        assert_eq!(p.argv, ["python3", "-u", "/shim/cortex_shim.py"]);
        assert_eq!(
            p.prepare.as_deref(),
            Some(&["python3", "-u", "/shim/cortex_shim.py", "--prepare"].map(String::from)[..])
        );
    }
}
