//! A [`ReplicaPlan`] as a replica on a Ray node runs it: the paths of the server's machine in
//! its command and environment become places the node has (the unpacked bundle, a scratch
//! directory), its preparation runs before it in the same actor, and its `compute` becomes
//! Ray resources.

use std::collections::BTreeMap;
use std::path::Path;

use super::bundles::{PROJECT_DIR, RUNTIME_DIR};
use super::protocol::DesiredReplica;
use crate::engine::{ReplicaPlan, EXIT_INIT_FAILED};

/// Replaced by the actor with its working directory (where Ray unpacked the bundle).
const WORKING_DIR: &str = "@CORTEX_RAY_WORKING_DIR@";
/// Replaced by the actor with a directory of its node it may write.
const SCRATCH: &str = "@CORTEX_RAY_SCRATCH@";

/// The grace the driver gives a replica's program to stop (the server stops every worker
/// with 5 s).
pub(super) const STOP_GRACE_SECONDS: f64 = 5.0;

/// What a replica of `plan` runs on a node, at generation 1. `runtime_dir` is the server's
/// python runtime (shipped in the bundle under `runtime/`), `working_dir` the bundle's URL.
pub(super) fn desired(
    plan: &ReplicaPlan,
    runtime_dir: &Path,
    working_dir: Option<String>,
) -> DesiredReplica {
    let project = plan.cwd.display().to_string();
    let runtime = runtime_dir.display().to_string();
    let on_node = |text: &str| -> String {
        text.replace(&project, &format!("{WORKING_DIR}/{PROJECT_DIR}"))
            .replace(&runtime, &format!("{WORKING_DIR}/{RUNTIME_DIR}"))
    };
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in &plan.env {
        let value = match key.as_str() {
            // The server's virtualenv directory is on its own disk: the node keeps its own.
            "CORTEX_VENVS_DIR" => {
                let model = Path::new(value)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "_".to_string());
                format!("{SCRATCH}/venvs/{model}")
            }
            _ => on_node(value),
        };
        env.insert(key.clone(), value);
    }
    let argv: Vec<String> = plan.argv.iter().map(|a| on_node(a)).collect();
    let argv = match &plan.prepare {
        // Prepared in the same actor, before the program: a failed preparation is a failed
        // initialisation.
        Some(prepare) => {
            let prepare: Vec<String> = prepare.iter().map(|a| on_node(a)).collect();
            let script = format!(
                "{} || exit {EXIT_INIT_FAILED}; exec {}",
                shell_words::join(&prepare),
                shell_words::join(&argv)
            );
            vec!["/bin/sh".to_string(), "-c".to_string(), script]
        }
        None => argv,
    };
    DesiredReplica {
        id: plan.replica_id.clone(),
        generation: 1,
        argv,
        env,
        cwd: Some(format!("{WORKING_DIR}/{PROJECT_DIR}")),
        working_dir,
        num_cpus: plan.cpu_millis.map_or(0.0, |m| m as f64 / 1000.0),
        memory: plan.mem_limit,
        num_gpus: plan.gpus,
        resources: BTreeMap::new(),
        takes_socket: plan.takes_socket,
        grace_seconds: STOP_GRACE_SECONDS,
        memory_limit: plan.mem_limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Purpose, ReplicaAccess};

    #[test]
    fn server_paths_become_node_paths_and_compute_becomes_resources() {
        let plan = ReplicaPlan {
            api: "iris".into(),
            replica_id: "iris-1-0".into(),
            purpose: Purpose::Realtime,
            argv: vec![
                "/usr/bin/python3".into(),
                "-u".into(),
                "/srv/rt/cortex_shim.py".into(),
            ],
            cwd: "/srv/projects/abc".into(),
            env: vec![
                (
                    "PYTHONPATH".into(),
                    "/srv/projects/abc:/srv/projects/abc/lib".into(),
                ),
                ("CORTEX_VENVS_DIR".into(), "/srv/venvs/model-1".into()),
                ("GREETING".into(), "hi there".into()),
            ],
            takes_socket: true,
            mem_limit: Some(1 << 30),
            cpu_millis: Some(500),
            prepare: Some(vec![
                "/usr/bin/python3".into(),
                "-u".into(),
                "/srv/rt/cortex_shim.py".into(),
                "--prepare".into(),
            ]),
            gpus: 0,
            access: ReplicaAccess::default(),
        };
        let d = desired(
            &plan,
            Path::new("/srv/rt"),
            Some("http://s/b.tar.gz".into()),
        );
        assert_eq!(
            d.env["PYTHONPATH"],
            "@CORTEX_RAY_WORKING_DIR@/project:@CORTEX_RAY_WORKING_DIR@/project/lib"
        );
        assert_eq!(
            d.env["CORTEX_VENVS_DIR"],
            "@CORTEX_RAY_SCRATCH@/venvs/model-1"
        );
        assert_eq!(d.env["GREETING"], "hi there");
        assert_eq!(d.cwd.as_deref(), Some("@CORTEX_RAY_WORKING_DIR@/project"));
        assert_eq!(d.argv[..2], ["/bin/sh", "-c"]);
        assert_eq!(
            d.argv[2],
            "/usr/bin/python3 -u @CORTEX_RAY_WORKING_DIR@/runtime/cortex_shim.py --prepare || exit 3; exec /usr/bin/python3 -u @CORTEX_RAY_WORKING_DIR@/runtime/cortex_shim.py"
        );
        assert_eq!(
            (d.num_cpus, d.memory, d.generation),
            (0.5, Some(1 << 30), 1)
        );
    }
}
