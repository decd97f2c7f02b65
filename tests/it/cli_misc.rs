//! Completions, environments, version, watch, upload limits and unsupported commands.

use std::process::Stdio;

use crate::harness::*;

#[test]
fn completion_scripts_in_the_repo_match_the_binary() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
    for (shell, file) in [
        ("bash", "cortex.bash"),
        ("zsh", "_cortex"),
        ("fish", "cortex.fish"),
        ("powershell", "_cortex.ps1"),
        ("elvish", "cortex.elv"),
    ] {
        let out = std::process::Command::new(cortex_bin())
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let committed = std::fs::read_to_string(root.join(file)).unwrap_or_default();
        assert!(
            committed == stdout(&out),
            "completions/{file} is out of date; regenerate it with `cargo run -- completion {shell} > completions/{file}`"
        );
    }
}

#[test]
fn env_configure_list_default_token_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let cortex = |args: &[&str]| {
        std::process::Command::new(cortex_bin())
            .env("CORTEX_CLI_CONFIG_DIR", dir.path())
            .env_remove("CORTEX_ENDPOINT")
            .env_remove("CORTEX_TOKEN")
            .env_remove("CORTEX_ENV")
            .args(args)
            .output()
            .unwrap()
    };
    let out = cortex(&[
        "env",
        "configure",
        "prod",
        "--endpoint",
        "http://127.0.0.1:9/",
        "--token",
        "t0k",
    ]);
    assert_eq!(
        stdout(&out),
        "configured prod environment\n",
        "{}",
        stderr(&out)
    );
    let list = stdout(&cortex(&["env", "list"]));
    assert_eq!(
        list,
        "name:     local (default)\nendpoint: embedded local server\n\nname:     prod\nendpoint: http://127.0.0.1:9\n"
    );
    assert_eq!(stdout(&cortex(&["env", "token", "prod"])), "t0k\n");
    assert_eq!(
        stdout(&cortex(&["env", "default", "prod"])),
        "set prod as the default environment\n"
    );
    assert_eq!(
        stdout(&cortex(&["env", "default"])),
        "current default environment: prod\n"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&cortex(&["env", "list", "-o", "json"]).stdout).unwrap();
    assert_eq!(json[1]["default"], true);
    // The default environment is used: nothing listens on port 9, and the error says where.
    let get = cortex(&["get"]);
    assert_refused(&get, "cannot reach the cortex server at http://127.0.0.1:9");
    let missing = cortex(&["get", "-e", "staging"]);
    assert!(stderr(&missing).contains(
        "the staging environment is not configured; add it with `cortex env configure staging"
    ));
    assert_eq!(
        stdout(&cortex(&["env", "delete", "prod"])),
        "deleted the prod environment configuration\nset the default environment to local\n"
    );
    assert!(!cortex(&["env", "delete", "prod"]).status.success());
    let bad = cortex(&[
        "env",
        "configure",
        "x",
        "--endpoint",
        "ftp://h",
        "--token",
        "t",
    ]);
    assert!(stderr(&bad).contains("--endpoint must start with http:// or https://"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("cli.yaml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn version_prints_the_cli_and_server_versions() {
    let s = Server::start();
    let out = s.ok(s.dir.path(), &["version"]);
    let v = env!("CARGO_PKG_VERSION");
    assert_eq!(out, format!("cli version: {v}\nserver version: {v}\n"));
}

#[test]
fn a_proxy_meant_for_the_outside_world_does_not_see_local_traffic() {
    let s = Server::start();
    // A proxy that does not exist: any request sent through it would fail.
    let out = s
        .cortex()
        .current_dir(s.dir.path())
        .args(["get"])
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("http_proxy", "http://127.0.0.1:9")
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "no apis are deployed\n");
}

/// Plain HTTP checks no certificate, so a command never reads the system's CA bundle for it
/// (which cost every command a few milliseconds): one that is a FIFO nobody writes to, which
/// blocks whoever opens it, does not stop `cortex get`.
#[test]
fn a_command_to_a_plain_http_server_reads_no_ca_bundle() {
    let s = Server::start();
    let fifo = s.dir.path().join("ca-bundle");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let mut child = s
        .cortex()
        .current_dir(s.dir.path())
        .args(["get"])
        .env("SSL_CERT_FILE", &fifo)
        .env("SSL_CERT_DIR", s.dir.path().join("no-such-dir"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_for_exit(&mut child, DEADLINE);
    if exited.is_none() {
        child.kill().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        exited.is_some(),
        "`cortex get` blocked on opening the CA bundle"
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "no apis are deployed\n");
}

/// The child's exit status once it exits within `deadline` (`None`: still running).
fn wait_for_exit(
    child: &mut std::process::Child,
    deadline: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let end = std::time::Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if std::time::Instant::now() > end {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn job_commands_on_a_realtime_api_or_an_unknown_api_say_why_not() {
    let s = Server::start();
    let p = s.example_project("command-realtime");
    s.ok(&p, &["deploy"]);
    for args in [
        ["get", "reverser", "7fffffffffffffff"],
        ["logs", "reverser", "7fffffffffffffff"],
        ["delete", "reverser", "7fffffffffffffff"],
    ] {
        let out = s.run(s.dir.path(), &args);
        assert_refused(&out, "reverser is a RealtimeAPI");
    }
    for args in [
        ["get", "nothing", "7fffffffffffffff"],
        ["logs", "nothing", "7fffffffffffffff"],
        ["delete", "nothing", "7fffffffffffffff"],
    ] {
        let out = s.run(s.dir.path(), &args);
        assert_refused(&out, "api nothing is not deployed");
    }
}

#[test]
fn get_watch_repeats_when_not_a_terminal() {
    let s = Server::start();
    let mut child = KillOnDrop(
        s.cortex()
            .args(["get", "--watch"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = line_channel(child.0.stdout.take().unwrap());
    let first = wait_line(&lines, "$ cortex get");
    let second = wait_line(&lines, "$ cortex get");
    drop(child);
    assert!(
        second.iter().any(|l| l == "no apis are deployed"),
        "{first:?} {second:?}"
    );
    assert!(
        !second.concat().contains('\x1b'),
        "no escape codes when not a terminal"
    );
}

#[test]
fn deploying_from_home_is_refused() {
    let s = Server::start();
    let home = s.project("home");
    write(
        &home,
        "cortex.yaml",
        "- name: a\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: x\n",
    );
    let out = s
        .cortex()
        .current_dir(&home)
        .env("HOME", &home)
        .arg("deploy")
        .output()
        .unwrap();
    assert_refused(&out, "cannot deploy from your home directory");
}

#[test]
fn a_missing_config_file_explains_what_to_do() {
    let s = Server::start();
    let empty = s.project("empty");
    let out = s.run(&empty, &["deploy"]);
    assert_refused(&out, "./cortex.yaml does not exist");
}

#[test]
fn large_uploads_ask_first_and_oversized_ones_are_refused() {
    let s = Server::start();
    let p = s.example_project("command-realtime");
    // Not a terminal and no --yes: refuse, saying how to go on.
    let out = s
        .cortex()
        .current_dir(&p)
        .env("CORTEX_UPLOAD_PROMPT_BYTES", "10")
        .arg("deploy")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("cortex will upload"), "{err}");
    assert!(err.contains("re-run with --yes"), "{err}");
    assert_eq!(
        s.ok(&p, &["get"]),
        "no apis are deployed\n",
        "nothing was deployed"
    );
    // --yes skips the question.
    let out = s
        .cortex()
        .current_dir(&p)
        .env("CORTEX_UPLOAD_PROMPT_BYTES", "10")
        .args(["deploy", "--yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Above the hard limit nothing helps.
    let out = s
        .cortex()
        .current_dir(&p)
        .env("CORTEX_UPLOAD_LIMIT_BYTES", "10")
        .args(["deploy", "--yes"])
        .output()
        .unwrap();
    assert_refused(&out, "larger than the 10 B upload limit");
}

#[test]
fn deploy_output_json_and_yaml_print_the_results() {
    let s = Server::start();
    let p = s.example_project("command-realtime");
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&p, &["deploy", "-o", "json"])).unwrap();
    assert_eq!(json[0]["name"], "reverser");
    assert_eq!(json[0]["action"], "created");
    let yaml = s.ok(&p, &["deploy", "-o", "yaml"]);
    assert!(yaml.contains("action: up_to_date"), "{yaml}");
}

#[test]
fn identical_projects_are_stored_once() {
    let s = Server::start();
    let p = s.example_project("command-realtime");
    s.ok(&p, &["deploy"]);
    write(&p, "cortex.yaml", "- name: other\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 server.py\n");
    // The config file is not part of the bundle, so the project is unchanged.
    s.ok(&p, &["deploy"]);
    let bundles = std::fs::read_dir(s.data_dir().join("bundles"))
        .unwrap()
        .count();
    assert_eq!(bundles, 1);
}

#[test]
fn get_watch_redraws_in_place_on_a_terminal() {
    let s = Server::start();
    // `script` runs the command on a pseudo-terminal.
    let cmd = format!("{} get --watch", cortex_bin().display());
    let mut child = KillOnDrop(
        std::process::Command::new("script")
            // `script` runs the command with $SHELL -c: a CI user's login shell may be nologin.
            .env("SHELL", "/bin/sh")
            .args(["-qfec", &cmd, "/dev/null"])
            .env("CORTEX_CLI_CONFIG_DIR", s.cli_dir())
            .env("CORTEX_ENDPOINT", &s.url)
            .env("CORTEX_TOKEN", &s.token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("`script` (util-linux) is needed for this test"),
    );
    let lines = line_channel(child.0.stdout.take().unwrap());
    wait_line(&lines, "$ cortex get");
    // The second frame moves the cursor up over the first and draws over it line by line,
    // clearing only what is left of each line (nothing is cleared before it is redrawn).
    let second = wait_line(&lines, "A\r$ cortex get");
    drop(child);
    let header = second.last().unwrap();
    assert!(
        header.starts_with("\x1b[J\x1b[") && header.ends_with("\x1b[K"),
        "{second:?}"
    );
    assert!(!second.concat().contains("\x1b[2J"), "{second:?}");
}

#[test]
fn get_without_env_lists_every_configured_environment() {
    let a = Server::start();
    let b = Server::start();
    let cfg = tempfile::tempdir().unwrap();
    let cortex = |cwd: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new(cortex_bin())
            .env("CORTEX_CLI_CONFIG_DIR", cfg.path())
            .env("CORTEX_LOCAL_PORT", "0")
            .env_remove("CORTEX_ENDPOINT")
            .env_remove("CORTEX_TOKEN")
            .env_remove("CORTEX_ENV")
            .current_dir(cwd)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let here = cfg.path();
    cortex(
        here,
        &[
            "env",
            "configure",
            "alpha",
            "--endpoint",
            &a.url,
            "--token",
            &a.token,
        ],
    );
    cortex(
        here,
        &[
            "env",
            "configure",
            "beta",
            "--endpoint",
            &b.url,
            "--token",
            &b.token,
        ],
    );
    cortex(
        here,
        &[
            "env",
            "configure",
            "down",
            "--endpoint",
            "http://127.0.0.1:9",
            "--token",
            "x",
        ],
    );
    cortex(here, &["env", "default", "alpha"]);
    let p = a.example_project("command-realtime");
    cortex(&p, &["deploy"]);
    cortex(&p, &["deploy", "-e", "beta"]);
    let table = cortex(here, &["get"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("env     realtime api"), "{table}");
    assert!(lines[1].starts_with("alpha   reverser"), "{table}");
    assert!(lines[2].starts_with("beta    reverser"), "{table}");
    assert!(
        table.contains("unable to detect apis from the down environment; run `cortex get --env down` if this is unexpected"),
        "{table}"
    );
    // The local server was not running and is not the default: it was not started.
    assert!(!cfg.path().join("local/server.json").exists());
    let json: serde_json::Value =
        serde_json::from_str(&cortex(here, &["get", "-o", "json"])).unwrap();
    assert_eq!(json[0]["env_name"], "alpha");
    assert_eq!(json[0]["apis"][0]["name"], "reverser");
    assert!(json[2]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("127.0.0.1:9"));
    assert_eq!(json[2]["error"]["kind"], "unreachable");
    // With -e only that environment, without the env column.
    assert!(cortex(here, &["get", "-e", "beta"]).starts_with("realtime api"));
}

#[test]
fn uploads_show_a_progress_bar_on_a_terminal() {
    let s = Server::start();
    let p = s.example_project("command-realtime");
    // 1 MiB that does not compress, so the bundle is big enough for a bar.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..1024 * 1024)
        .map(|_| {
            // xorshift64: cheap, deterministic, incompressible
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    std::fs::write(p.join("weights.bin"), noise).unwrap();
    let cmd = format!("{} deploy --yes", cortex_bin().display());
    let out = std::process::Command::new("script")
        // `script` runs the command with $SHELL -c: a CI user's login shell may be nologin.
        .env("SHELL", "/bin/sh")
        .args(["-qfec", &cmd, "/dev/null"])
        .current_dir(&p)
        .env("CORTEX_CLI_CONFIG_DIR", s.cli_dir())
        .env("CORTEX_ENDPOINT", &s.url)
        .env("CORTEX_TOKEN", &s.token)
        .stdin(Stdio::null())
        .output()
        .expect("`script` (util-linux) is needed for this test");
    let text = stdout(&out);
    assert!(text.contains("uploading project"), "{text:?}");
    assert!(text.contains("creating reverser (RealtimeAPI)"), "{text:?}");
    // Not on a terminal: no bar.
    write(&p, "more.bin", "changed");
    let plain = s.run(&p, &["deploy", "--yes"]);
    assert!(
        !stderr(&plain).contains("uploading project"),
        "{}",
        stderr(&plain)
    );
}

#[test]
fn the_upload_prompt_on_a_terminal_takes_no_and_yes() {
    use std::io::Write;
    let s = Server::start();
    let p = s.example_project("command-realtime");
    let answer = |reply: &str| {
        let cmd = format!("{} deploy", cortex_bin().display());
        let mut child = std::process::Command::new("script")
            // `script` runs the command with $SHELL -c: a CI user's login shell may be nologin.
            .env("SHELL", "/bin/sh")
            .args(["-qfec", &cmd, "/dev/null"])
            .current_dir(&p)
            .env("CORTEX_CLI_CONFIG_DIR", s.cli_dir())
            .env("CORTEX_ENDPOINT", &s.url)
            .env("CORTEX_TOKEN", &s.token)
            .env("CORTEX_UPLOAD_PROMPT_BYTES", "10")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("`script` (util-linux) is needed for this test");
        // Raw chunks, not lines: the question ends without a newline.
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        let mut out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0
                    || tx
                        .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                        .is_err()
                {
                    break;
                }
            }
        });
        let mut stdin = child.stdin.take().unwrap();
        // Wait for the question before answering it.
        let mut seen = String::new();
        wait_for("the prompt", DEADLINE, || {
            while let Ok(l) = lines.try_recv() {
                seen.push_str(&l);
            }
            seen.contains("continue? (y/n)").then_some(())
        });
        stdin.write_all(reply.as_bytes()).unwrap();
        let status = wait_for("deploy to finish", DEADLINE, || child.try_wait().unwrap());
        while let Ok(l) = lines.recv_timeout(std::time::Duration::from_secs(5)) {
            seen.push_str(&l);
        }
        (status, seen)
    };
    let (status, text) = answer("n\n");
    assert!(!status.success());
    assert!(text.contains("deploy cancelled"), "{text}");
    assert_eq!(s.ok(&p, &["get"]), "no apis are deployed\n");
    let (status, text) = answer("y\n");
    assert!(status.success(), "{text}");
    assert!(text.contains("creating reverser"), "{text}");
}

#[test]
fn api_name_arguments_are_checked_before_any_request() {
    let s = Server::start();
    for args in [["delete", ".."], ["logs", "."], ["get", "a\nb"]] {
        let out = s.run(s.dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("invalid value"), "{}", stderr(&out));
    }
    // A saved model's free-form name is sent as one path segment: a slash stays in the name.
    for args in [["logs", "Bad_Name"], ["get", "a/b"], ["delete", "a b?c"]] {
        let out = s.run(s.dir.path(), &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains(&format!("api {} is not deployed", args[1])),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn cortex_env_selects_a_configured_environment() {
    let s = Server::start();
    let cfg = tempfile::tempdir().unwrap();
    let cortex = |envs: &[(&str, &str)], args: &[&str]| {
        let mut c = std::process::Command::new(cortex_bin());
        c.env("CORTEX_CLI_CONFIG_DIR", cfg.path())
            .env_remove("CORTEX_ENDPOINT")
            .env_remove("CORTEX_TOKEN")
            .env_remove("CORTEX_ENV")
            .args(args);
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    cortex(
        &[],
        &[
            "env",
            "configure",
            "ci",
            "--endpoint",
            &s.url,
            "--token",
            &s.token,
        ],
    );
    // The default is still local (not running): CORTEX_ENV points at the ci server instead.
    let out = cortex(&[("CORTEX_ENV", "ci")], &["version"]);
    assert!(
        stdout(&out).contains(&format!("server version: {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        stdout(&out)
    );
    let out = cortex(&[("CORTEX_ENV", "ci")], &["get"]);
    assert_eq!(stdout(&out), "no apis are deployed\n", "{}", stderr(&out));
    // CORTEX_TOKEN overrides the stored token.
    let out = cortex(
        &[("CORTEX_ENV", "ci"), ("CORTEX_TOKEN", "ctx_u_bad")],
        &["get"],
    );
    assert!(
        stderr(&out).contains("the token is not valid"),
        "{}",
        stderr(&out)
    );
    assert!(
        !cfg.path().join("local/server.json").exists(),
        "the local server was not started"
    );
}

#[test]
fn a_cortex_0_22_config_deploys_unchanged() {
    let s = Server::start();
    let p = s.project("legacy");
    write(
        &p,
        "cortex.yaml",
        "# cortex.yaml\n\n- name: iris-classifier\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n    config:\n      bucket: cortex-examples\n      key: sklearn/iris-classifier/model.pkl\n  monitoring:\n    model_type: classification\n  compute:\n    cpu: 0.2\n    mem: 200M\n",
    );
    write(
        &p,
        "predictor.py",
        "class PythonPredictor:\n    def __init__(self, config):\n        self.key = config['key']\n\n    def predict(self, payload):\n        return self.key\n",
    );
    s.ok(&p, &["deploy"]);
    let api = s.wait_status("iris-classifier", "live");
    assert_eq!(api["spec"]["monitoring"]["model_type"], "classification");
    assert_eq!(api["spec"]["compute"]["mem"], "200M");
    assert_eq!(api["spec"]["compute"]["cpu"], "200m");
    assert_eq!(
        s.predict("iris-classifier", "{}").text().unwrap(),
        "sklearn/iris-classifier/model.pkl"
    );
}
