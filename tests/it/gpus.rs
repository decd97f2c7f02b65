//! `compute.gpu` on the local engine: whole GPUs reserved per replica and handed over as
//! `CUDA_VISIBLE_DEVICES`; a replica asking for more than are free waits, saying so. The
//! machine's GPUs are set with `CORTEX_ENGINE_GPUS` (this machine has none).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::harness::*;

const SEER: &str = "import os\n\nclass PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')\n";

fn gpu_api(s: &Server, name: &str, gpus: u32, replicas: u32) -> std::path::PathBuf {
    s.python_project(
        name,
        "RealtimeAPI",
        SEER,
        &format!("  compute:\n    gpu: {gpus}\n  autoscaling:\n    min_replicas: {replicas}\n    max_replicas: {replicas}\n"),
    )
}

#[test]
fn gpus_are_reserved_whole_and_handed_over_as_cuda_visible_devices() {
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_ENGINE_GPUS", "2")]);
    let two = gpu_api(&s, "seer", 1, 2);
    s.ok(&two, &["deploy"]);
    s.wait_status("seer", "live");
    // Each replica has its own GPU: both ids are seen, never a shared or empty one.
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 2 {
        assert!(Instant::now() < deadline, "saw only {seen:?}");
        seen.insert(s.predict("seer", "{}").text().unwrap());
    }
    assert_eq!(seen, BTreeSet::from(["0".to_string(), "1".to_string()]));

    // A replica that asks for none sees none.
    let plain = gpu_api(&s, "plain", 0, 1);
    s.ok(&plain, &["deploy"]);
    s.wait_status("plain", "live");
    assert_eq!(s.predict("plain", "{}").text().unwrap(), "");

    // No GPU left: it waits, saying why, and starts once one is given back.
    let third = gpu_api(&s, "third", 1, 1);
    s.ok(&third, &["deploy"]);
    let api = s.wait_status("third", "compute_unavailable");
    let why = api["errors"][0].as_str().unwrap();
    assert!(
        why.contains("it needs 1 gpu (compute.gpu) while 0 of this machine's 2 are free"),
        "{why}"
    );
    s.ok(&two, &["delete", "seer"]);
    s.wait_status("third", "live");
    let id = s.predict("third", "{}").text().unwrap();
    assert!(id == "0" || id == "1", "{id}");

    // More than the machine has: it can never start here.
    let greedy = gpu_api(&s, "greedy", 3, 1);
    s.ok(&greedy, &["deploy"]);
    let api = s.wait_status("greedy", "compute_unavailable");
    assert!(
        api["errors"][0].as_str().unwrap().contains(
            "3 gpu (compute.gpu) while 1 of this machine's 2 are free; it can never start here"
        ),
        "{api}"
    );
}

#[test]
fn a_machine_without_gpus_says_so_instead_of_running_on_cpu() {
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_ENGINE_GPUS", "0")]);
    let p = gpu_api(&s, "wants-gpu", 1, 1);
    s.ok(&p, &["deploy"]);
    let api = s.wait_status("wants-gpu", "compute_unavailable");
    assert!(
        api["errors"][0].as_str().unwrap().contains(
            "1 gpu (compute.gpu) while 0 of this machine's 0 are free; it can never start here"
        ),
        "{api}"
    );
}
