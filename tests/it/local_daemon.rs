//! The embedded local server the CLI starts by itself.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::*;

/// `cortex` with only a temp config dir: it must find or start the local server itself.
fn local_cortex(config_dir: &Path) -> Command {
    let mut c = Command::new(cortex_bin());
    c.env("CORTEX_CLI_CONFIG_DIR", config_dir)
        .env("CORTEX_LOCAL_PORT", "0")
        .env_remove("CORTEX_ENDPOINT")
        .env_remove("CORTEX_TOKEN")
        .env_remove("CORTEX_ENV")
        .stdin(Stdio::null());
    c
}

/// Stops the local server when the test ends, whatever happened.
struct StopOnDrop<'a>(&'a Path);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = local_cortex(self.0).args(["server", "stop"]).output();
    }
}

#[test]
fn two_concurrent_first_calls_start_one_server() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    let _stop = StopOnDrop(&cfg);
    let a = local_cortex(&cfg)
        .arg("get")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b = local_cortex(&cfg)
        .arg("get")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), "no apis are deployed\n");
    }
    let log = std::fs::read_to_string(cfg.join("local/server.log")).unwrap();
    assert_eq!(log.matches("listening on").count(), 1, "{log}");

    let status = local_cortex(&cfg)
        .args(["server", "status"])
        .output()
        .unwrap();
    assert!(status.status.success());
    assert!(stdout(&status).contains("the local cortex server is running"));
    let rt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cfg.join("local/server.json")).unwrap()).unwrap();
    assert!(stdout(&status).contains(&format!("pid:      {}", rt["pid"])));
    // The isolation its replicas run under.
    assert!(
        stdout(&status).contains("replicas: sandboxed (standard landlock, abi "),
        "{}",
        stdout(&status)
    );

    // Its reader gone (`| true`), `server status` ends quietly, as every command does.
    let piped = Command::new("sh")
        .env("CORTEX", cortex_bin())
        .env("CORTEX_CLI_CONFIG_DIR", &cfg)
        .args(["-c", "\"$CORTEX\" server status | true"])
        .output()
        .unwrap();
    assert!(!stderr(&piped).contains("panicked"), "{}", stderr(&piped));

    let stop = local_cortex(&cfg)
        .args(["server", "stop"])
        .output()
        .unwrap();
    assert!(
        stdout(&stop).starts_with("stopped the local cortex server"),
        "{}",
        stdout(&stop)
    );
    // Stopped means exited: a backup may begin.
    let pid = rt["pid"].as_u64().unwrap();
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = state
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest.trim_start());
    assert!(
        state.is_empty() || state.starts_with('Z'),
        "pid {pid} still runs: {state}"
    );
    let status = local_cortex(&cfg)
        .args(["server", "status"])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(1));
    assert!(stdout(&status).contains("is not running"));
}

#[test]
fn deploy_with_no_setup_uses_the_local_server() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    let _stop = StopOnDrop(&cfg);
    let project = dir.path().join("project");
    copy_dir(&example("command-realtime"), &project);
    let out = local_cortex(&cfg)
        .current_dir(&project)
        .arg("deploy")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("creating reverser (RealtimeAPI)"));

    let token = local_cortex(&cfg).args(["env", "token"]).output().unwrap();
    let token = stdout(&token).trim().to_string();
    assert_eq!(
        token,
        std::fs::read_to_string(cfg.join("local/admin.token"))
            .unwrap()
            .trim()
    );

    let api = wait_for("reverser to be live", DEADLINE, || {
        let out = local_cortex(&cfg)
            .args(["get", "reverser", "-o", "json"])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["status"] == "live").then_some(v)
    });
    let resp = http()
        .post(api["endpoint"].as_str().unwrap())
        .body(r#"{"text": "abc"}"#)
        .header("content-type", "application/json")
        .send()
        .unwrap();
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["reversed"], "cba");
}

#[test]
fn server_stop_never_signals_a_process_that_is_not_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    // A stale runtime file whose pid now belongs to an unrelated process.
    let mut bystander = KillOnDrop(Command::new("sleep").arg("300").spawn().unwrap());
    std::fs::create_dir_all(cfg.join("local")).unwrap();
    std::fs::write(
        cfg.join("local/server.json"),
        format!(
            r#"{{"pid": {}, "port": 9, "url": "http://127.0.0.1:9", "version": "0.0.0"}}"#,
            bystander.0.id()
        ),
    )
    .unwrap();
    let stop = local_cortex(&cfg)
        .args(["server", "stop"])
        .output()
        .unwrap();
    assert_eq!(stdout(&stop), "the local cortex server is not running\n");
    let status = local_cortex(&cfg)
        .args(["server", "status"])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(1));
    assert!(
        bystander.0.try_wait().unwrap().is_none(),
        "the bystander was killed"
    );
}

#[test]
fn cortex_server_in_the_foreground_is_the_local_server() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    let _stop = StopOnDrop(&cfg);
    let mut server = KillOnDrop(
        local_cortex(&cfg)
            .args(["server", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = server.0.id();
    wait_for("the foreground server", DEADLINE, || {
        let rt: serde_json::Value =
            serde_json::from_slice(&std::fs::read(cfg.join("local/server.json")).ok()?).ok()?;
        (rt["pid"] == pid).then_some(())
    });
    // The CLI uses it instead of starting a daemon.
    let status = local_cortex(&cfg)
        .args(["server", "status"])
        .output()
        .unwrap();
    assert!(
        stdout(&status).contains(&format!("pid:      {pid}")),
        "{}",
        stdout(&status)
    );
    let get = local_cortex(&cfg).arg("get").output().unwrap();
    assert_eq!(stdout(&get), "no apis are deployed\n");
    let stop = local_cortex(&cfg)
        .args(["server", "stop"])
        .output()
        .unwrap();
    assert!(stdout(&stop).starts_with("stopped the local cortex server"));
    let status = wait_for("the foreground server to exit", DEADLINE, || {
        server.0.try_wait().unwrap()
    });
    assert!(status.success());
}

#[test]
fn starting_the_local_server_shows_a_spinner_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    let _stop = StopOnDrop(&cfg);
    let cmd = format!("{} get", cortex_bin().display());
    let out = Command::new("script")
        // `script` runs the command with $SHELL -c: a CI user's login shell may be nologin.
        .env("SHELL", "/bin/sh")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("CORTEX_CLI_CONFIG_DIR", &cfg)
        .env("CORTEX_LOCAL_PORT", "0")
        .env_remove("CORTEX_ENDPOINT")
        .env_remove("CORTEX_TOKEN")
        .env_remove("CORTEX_ENV")
        .stdin(Stdio::null())
        .output()
        .expect("`script` (util-linux) is needed for this test");
    let text = stdout(&out);
    assert!(
        text.contains("starting the local cortex server"),
        "{text:?}"
    );
    assert!(text.contains("no apis are deployed"), "{text:?}");
}

#[test]
fn a_taken_port_is_said_with_the_port_the_local_server_took_instead() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    let _stop = StopOnDrop(&cfg);
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port().to_string();
    let out = local_cortex(&cfg)
        .env("CORTEX_LOCAL_PORT", &taken)
        .arg("get")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let note = stderr(&out);
    assert!(
        note.contains(&format!(
            "port {taken} is in use by another program, so the local cortex server listens on port"
        )),
        "{note}"
    );
    let running: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cfg.join("local/server.json")).unwrap())
            .unwrap();
    let url = running["url"].as_str().unwrap();
    assert!(note.contains(url), "{note}");
    assert!(!url.ends_with(&format!(":{taken}")));
}

/// The local server's URL, from its runtime file.
fn local_url(cfg: &Path) -> String {
    let running: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cfg.join("local/server.json")).unwrap())
            .unwrap();
    running["url"].as_str().unwrap().to_string()
}

#[test]
fn the_local_server_keeps_its_port_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config");
    let _stop = StopOnDrop(&cfg);
    // Any port the first time (`CORTEX_LOCAL_PORT=0`); the same one after each restart.
    let get = || {
        let out = local_cortex(&cfg).arg("get").output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        local_url(&cfg)
    };
    let first = get();
    for _ in 0..2 {
        let out = local_cortex(&cfg)
            .args(["server", "stop"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(get(), first);
    }

    // Asked for a port that was taken, it took another; once the asked one is free again, it
    // keeps the one it had, and says so.
    let cfg2 = dir.path().join("config2");
    let _stop2 = StopOnDrop(&cfg2);
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port().to_string();
    let run = || {
        local_cortex(&cfg2)
            .env("CORTEX_LOCAL_PORT", &taken)
            .arg("get")
            .output()
            .unwrap()
    };
    assert!(run().status.success());
    let had = local_url(&cfg2);
    drop(holder);
    let out = local_cortex(&cfg2)
        .args(["server", "stop"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(local_url(&cfg2), had);
    assert!(
        stderr(&out).contains("keeps port") && stderr(&out).contains("the one it had before"),
        "{}",
        stderr(&out)
    );
}
