//! A temp cleaner that runs while the server does (`systemd-tmpfiles --clean`: daily on most
//! systemd machines, deleting files of some age under the temp directory) removes nothing the
//! server needs: not the replica tree, which is in the temp directory when the replica user
//! cannot reach the data directory, nor a data directory that is itself in a cleaned place.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::harness::*;

/// Runs `systemd-tmpfiles --clean` over `dirs` with an age of 0: whatever it may remove, it
/// removes.
fn clean(config_dir: &std::path::Path, dirs: &[&std::path::Path]) {
    let config = config_dir.join("clean-all.conf");
    let lines: String = dirs
        .iter()
        .map(|d| format!("d {} - - - 0\n", d.display()))
        .collect();
    std::fs::write(&config, lines).unwrap();
    let out = Command::new("systemd-tmpfiles")
        .arg("--clean")
        .arg(&config)
        .output()
        .expect("systemd-tmpfiles is installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_temp_cleaner_removes_nothing_the_server_and_its_replicas_need() {
    // Every user may pass through the temp dir, as through /tmp.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut s = Server::start_with_args(
        "127.0.0.1:0",
        &[("TMPDIR", tmp.path().to_str().unwrap())],
        &[],
    );
    let project = s.example_project("python-realtime");
    s.ok(&project, &["deploy"]);
    let api = s.wait_status("iris-classifier", "live");
    let tree = tmp.path().join("cortex-replicas");
    assert!(
        std::fs::read_dir(&tree).is_ok_and(|mut d| d.next().is_some()),
        "the replica tree is in TMPDIR (the data dir is under a closed directory)"
    );
    let data_parent = s.data_dir().parent().unwrap().to_path_buf();
    clean(s.dir.path(), &[tmp.path(), &data_parent]);

    // The replica starts again from the same files: its project, the runtime, its scratch.
    let pid = api["replicas"][0]["pid"].as_u64().unwrap() as i32;
    // SAFETY: kill(2) only sends a signal, to the replica this test's server started.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    wait_for("a new replica process, ready", DEADLINE, || {
        let v = s.api_json("iris-classifier")?;
        let r = &v["replicas"][0];
        (v["status"] == "live" && r["pid"].as_u64()? as i32 != pid).then_some(v)
    });
    let sample = std::fs::read_to_string(project.join("sample.json")).unwrap();
    assert_eq!(
        s.predict("iris-classifier", &sample).text().unwrap(),
        "setosa"
    );
    // The database is whole: the API comes back after a restart.
    s.restart();
    s.wait_status("iris-classifier", "live");
    assert_eq!(
        s.predict("iris-classifier", &sample).text().unwrap(),
        "setosa"
    );
}
