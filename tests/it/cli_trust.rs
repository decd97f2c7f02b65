//! The CLI never hangs and always says why; its `-o json|yaml` output is something scripts
//! can trust (errors as documents, JSON lines, one shape), and tracebacks name the user's files.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

/// `cortex` with a config dir of its own, talking to `endpoint` with a token.
fn cortex_at(config: &Path, endpoint: &str) -> Command {
    let mut c = Command::new(cortex_bin());
    c.env("CORTEX_CLI_CONFIG_DIR", config)
        .env("CORTEX_ENDPOINT", endpoint)
        .env("CORTEX_TOKEN", "some-token")
        .env("CORTEX_CLIENT_TIMEOUT", "1")
        .env_remove("CORTEX_ENV")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs `cmd` and waits for it within `deadline`; a command still running then is killed and
/// the test fails (it hung).
fn output_within(mut cmd: Command, deadline: Duration) -> Output {
    let mut child = cmd.spawn().unwrap();
    let end = Instant::now() + deadline;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the command hung for {deadline:?}; stderr so far:\n{}",
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A server that accepts connections and never answers.
fn silent_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    url
}

/// A web server that is not cortex: every request gets an HTML 404 page.
fn html_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let page = format!("<!DOCTYPE HTML>\n<html><head><title>Error response</title></head>\n<body>{}</body></html>\n", "<p>Nothing matches the given URI</p>".repeat(200));
            let _ = write!(
                conn,
                "HTTP/1.1 404 File not found\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    url
}

/// The bug: pointed at a web server that is not cortex, `get` printed its whole HTML page
/// as the error and nothing said the endpoint was wrong.
#[test]
fn a_server_that_is_not_cortex_is_named_as_such_without_its_whole_page() {
    let config = tempfile::tempdir().unwrap();
    let url = html_server();
    let mut cmd = cortex_at(config.path(), &url);
    cmd.arg("get");
    let out = output_within(cmd, DEADLINE);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{url} answered 404 Not Found to GET /api/v2/apis without a cortex error: it is not a cortex server")),
        "{err}"
    );
    assert!(err.contains("It said: <!DOCTYPE HTML>"), "{err}");
    assert!(!err.contains("Nothing matches"), "the whole page: {err}");
}

#[test]
fn an_endpoint_given_as_an_apis_url_is_named_as_the_path_too_many() {
    let s = Server::start();
    let out = s
        .cortex()
        .env("CORTEX_ENDPOINT", format!("{}/iris", s.url))
        .args(["get"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("has an endpoint with \"/iris\" too many")
            && err.contains("set its endpoint to the server's base url"),
        "{err}"
    );
}

/// The error document on stdout (one JSON line), with the human line still on stderr.
#[track_caller]
fn error_document(out: &Output, kind: &str) -> Value {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    let text = stdout(out);
    let doc: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {text:?}"));
    assert_eq!(doc["error"]["kind"], kind, "{doc}");
    assert!(
        !doc["error"]["message"].as_str().unwrap().is_empty(),
        "{doc}"
    );
    assert!(stderr(out).starts_with("error: "), "{}", stderr(out));
    doc
}

#[test]
fn a_server_that_never_answers_times_out_naming_the_endpoint() {
    let url = silent_server();
    let cfg = tempfile::tempdir().unwrap();
    let project = cfg.path().join("project");
    copy_dir(&example("command-realtime"), &project);
    for args in [&["get"][..], &["deploy", "-y"], &["delete", "x", "-y"]] {
        let mut cmd = cortex_at(cfg.path(), &url);
        cmd.current_dir(&project).args(args);
        let started = Instant::now();
        let out = output_within(cmd, Duration::from_secs(30));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(&url), "{args:?}: {err}");
        assert!(err.contains("did not answer"), "{args:?}: {err}");
        assert!(err.contains("CORTEX_CLIENT_TIMEOUT"), "{args:?}: {err}");
        assert!(started.elapsed() < Duration::from_secs(20), "{args:?}");
    }
    // A script gets the kind.
    let mut cmd = cortex_at(cfg.path(), &url);
    cmd.args(["get", "-o", "json"]);
    error_document(&output_within(cmd, Duration::from_secs(30)), "timed_out");
}

#[test]
fn a_mistyped_or_endless_client_timeout_is_the_users_to_fix_in_every_command() {
    let cfg = tempfile::tempdir().unwrap();
    let cortex = |timeout: &str, args: &[&str]| {
        let mut cmd = Command::new(cortex_bin());
        cmd.env("CORTEX_CLI_CONFIG_DIR", cfg.path())
            .env("CORTEX_CLIENT_TIMEOUT", timeout)
            .env_remove("CORTEX_ENV")
            .env_remove("CORTEX_ENDPOINT")
            .env_remove("CORTEX_TOKEN")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        output_within(cmd, Duration::from_secs(30))
    };
    // A remote environment configured (as the default, so no local server starts): `get`
    // without -e asks every environment, and used to blame each for not answering.
    let configure = [
        "env",
        "configure",
        "far",
        "--endpoint",
        "http://127.0.0.1:9",
    ];
    assert!(cortex("", &[&configure[..], &["--token", "t"]].concat())
        .status
        .success());
    assert!(cortex("", &["env", "default", "far"]).status.success());
    let doc = error_document(&cortex("abc", &["get", "-o", "json"]), "invalid_request");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CORTEX_CLIENT_TIMEOUT"),
        "{doc}"
    );
    // More than a clock can count is refused, not a crash (exit 101).
    for args in [&["get", "-o", "json"][..], &["get", "x", "-o", "json"]] {
        let out = cortex("99999999999999999999", args);
        let doc = error_document(&out, "invalid_request");
        assert!(
            doc["error"]["message"]
                .as_str()
                .unwrap()
                .contains("is too long"),
            "{doc}"
        );
    }
    let out = cortex("", &["wait", "x", "--timeout", "2562047788015216h"]);
    assert_ne!(out.status.code(), Some(101), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is too long; at most 876000h"),
        "{}",
        stderr(&out)
    );
}

/// A server that says it has no bundle, then takes an upload's head and never reads its body.
fn stalling_upload_server() -> String {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(16).unwrap();
    let listener: TcpListener = socket.into();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || serve_until_put(conn));
        }
    });
    url
}

fn serve_until_put(mut conn: TcpStream) {
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if conn.read(&mut byte).unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        if head.starts_with(b"PUT") {
            // Hold the connection, read nothing more.
            std::thread::sleep(Duration::from_secs(120));
            return;
        }
        let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
    }
}

#[test]
fn an_upload_that_stalls_times_out_but_not_for_its_length() {
    let url = stalling_upload_server();
    let cfg = tempfile::tempdir().unwrap();
    let project = cfg.path().join("project");
    copy_dir(&example("command-realtime"), &project);
    // 12 MiB that does not compress: more than the socket buffers take.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..12 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    std::fs::write(project.join("weights.bin"), noise).unwrap();
    let mut cmd = cortex_at(cfg.path(), &url);
    cmd.current_dir(&project)
        .args(["deploy", "-y", "-o", "json"]);
    let out = output_within(cmd, Duration::from_secs(40));
    let doc = error_document(&out, "timed_out");
    let err = stderr(&out);
    assert!(err.contains(&url), "{err}");
    assert!(err.contains("upload") && err.contains("stalled"), "{err}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/api/v2/bundles/"),
        "{doc}"
    );
}

#[test]
fn deploy_with_a_wrong_or_missing_token_says_what_to_do() {
    let s = Server::start();
    let p = s.example_project("command-realtime");
    let wrong = s
        .cortex()
        .current_dir(&p)
        .env("CORTEX_TOKEN", "not-a-token")
        .args(["deploy"])
        .output()
        .unwrap();
    assert_refused(&wrong, "the token is not valid");
    assert!(
        !stderr(&wrong).contains("answered 401"),
        "{}",
        stderr(&wrong)
    );
    let missing = s
        .cortex()
        .current_dir(&p)
        .env_remove("CORTEX_TOKEN")
        .args(["deploy", "-o", "json"])
        .output()
        .unwrap();
    assert_refused(&missing, "this route needs a token");
    error_document(&missing, "unauthorized");
    // The same words as `cortex get` gives.
    let get = s
        .cortex()
        .env("CORTEX_TOKEN", "not-a-token")
        .args(["get"])
        .output()
        .unwrap();
    let line = |o: &Output| stderr(o).lines().next().unwrap_or_default().to_string();
    assert_eq!(line(&wrong), line(&get));
}

#[test]
fn with_output_json_or_yaml_errors_are_documents_on_stdout() {
    let s = Server::start();
    let here = s.dir.path();
    error_document(&s.run(here, &["get", "nope", "-o", "json"]), "not_found");
    error_document(
        &s.run(here, &["delete", "nope", "-y", "-o", "json"]),
        "not_found",
    );
    error_document(&s.run(here, &["logs", "nope", "-o", "json"]), "not_found");
    let p = s.project("broken");
    write(
        &p,
        "cortex.yaml",
        "- name: broken\n  kind: RealtimeAPI\n  predictor: 3\n",
    );
    error_document(&s.run(&p, &["deploy", "-o", "json"]), "invalid_config");
    let empty = s.project("empty");
    error_document(&s.run(&empty, &["deploy", "-o", "json"]), "invalid_config");
    let unauthorized = s
        .cortex()
        .env("CORTEX_TOKEN", "not-a-token")
        .args(["get", "-o", "json"])
        .output()
        .unwrap();
    error_document(&unauthorized, "unauthorized");
    let yaml = s.run(here, &["get", "nope", "-o", "yaml"]);
    assert_eq!(yaml.status.code(), Some(1));
    let doc: Value = serde_yaml::from_slice(&yaml.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "not_found", "{doc}");
    // Without -o, stdout stays empty.
    assert!(s.run(here, &["get", "nope"]).stdout.is_empty());
}

/// A command line the CLI refuses before running (an unknown flag, a missing argument, a
/// mistyped command) is a document too, with clap's exit status 2 and its usage on stderr.
#[test]
fn with_output_json_a_refused_command_line_is_a_document() {
    let cfg = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(cortex_bin())
            .env("CORTEX_CLI_CONFIG_DIR", cfg.path())
            .args(args)
            .output()
            .unwrap()
    };
    for (args, reason) in [
        (&["get", "-o", "json", "--bogus"][..], "--bogus"),
        (&["wait", "--output=json"][..], "<API>"),
        (&["depoly", "-ojson"][..], "depoly"),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let doc: Value = serde_json::from_str(&stdout(&out))
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not one document ({e})"));
        assert_eq!(doc["error"]["kind"], "invalid_request", "{doc}");
        assert!(
            doc["error"]["message"].as_str().unwrap().contains(reason),
            "{doc}"
        );
        assert!(stderr(&out).contains("Usage:"), "{}", stderr(&out));
    }
    let yaml = run(&["get", "--bogus", "-o", "yaml"]);
    let doc: Value = serde_yaml::from_slice(&yaml.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "invalid_request", "{doc}");
    // Without -o, and for help, stdout is what it was.
    assert!(run(&["get", "--bogus"]).stdout.is_empty());
    let help = run(&["get", "--help", "-o", "json"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).contains("Usage:"), "{}", stdout(&help));
}

#[test]
fn logs_with_output_json_are_json_lines() {
    let s = Server::start();
    let p = s.example_project("command-realtime");
    s.ok(&p, &["deploy"]);
    s.wait_status("reverser", "live");
    let out = s.ok(s.dir.path(), &["logs", "reverser", "-o", "json"]);
    for line in out.lines() {
        let doc: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(doc["line"].is_string(), "{line}");
    }
}

#[test]
fn get_watch_with_output_json_prints_one_json_line_per_refresh() {
    let s = Server::start();
    let mut child = KillOnDrop(
        s.cortex()
            .args(["get", "-w", "-o", "json"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = line_channel(child.0.stdout.take().unwrap());
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let line = lines
            .recv_timeout(DEADLINE)
            .expect("a line from `cortex get -w -o json`");
        seen.push(line);
    }
    drop(child);
    for line in &seen {
        let doc: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?} in {seen:?}"));
        assert!(doc.is_array(), "{doc}");
    }
}

/// The structure of a JSON value: object keys and array elements' shapes, no scalars.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "error")
                .map(|(k, v)| (k.clone(), shape(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().take(1).map(shape).collect()),
        _ => Value::Null,
    }
}

#[test]
fn get_output_json_has_one_shape_with_or_without_remote_environments() {
    let s = Server::start();
    let p = s.example_project("command-realtime");
    s.ok(&p, &["deploy"]);
    s.wait_status("reverser", "live");
    // No environment configured: the endpoint comes from CORTEX_ENDPOINT.
    let plain: Value = serde_json::from_str(&s.ok(s.dir.path(), &["get", "-o", "json"])).unwrap();
    // A remote environment configured: `cortex get` lists every environment.
    let cfg = tempfile::tempdir().unwrap();
    let cortex = |args: &[&str]| {
        let out = Command::new(cortex_bin())
            .env("CORTEX_CLI_CONFIG_DIR", cfg.path())
            .env("CORTEX_LOCAL_PORT", "0")
            .env_remove("CORTEX_ENDPOINT")
            .env_remove("CORTEX_TOKEN")
            .env_remove("CORTEX_ENV")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    cortex(&[
        "env",
        "configure",
        "prod",
        "--endpoint",
        &s.url,
        "--token",
        &s.token,
    ]);
    cortex(&["env", "default", "prod"]);
    let all: Value = serde_json::from_str(&cortex(&["get", "-o", "json"])).unwrap();
    let one: Value = serde_json::from_str(&cortex(&["get", "-e", "prod", "-o", "json"])).unwrap();
    assert_eq!(all[0]["apis"][0]["name"], "reverser", "{all}");
    assert_eq!(shape(&plain), shape(&all), "{plain}\n{all}");
    assert_eq!(shape(&one), shape(&all), "{one}\n{all}");
}

const FAILING_INIT: &str = "\
class PythonPredictor:
    def __init__(self, config):
        raise ValueError(\"no weights in this project\")

    def predict(self, payload):
        return payload
";

#[test]
fn a_failed_init_is_reported_once_with_a_traceback_naming_the_users_file() {
    let s = Server::start();
    let p = s.python_project("broken-init", "RealtimeAPI", FAILING_INIT, "");
    s.ok(&p, &["deploy"]);
    let api = s.wait_status("broken-init", "error");
    let errors = api["errors"].as_array().unwrap();
    let text = errors[0].as_str().unwrap();
    // The traceback names the file as it is in the project, not the server's copy.
    assert!(text.contains("File \"predictor.py\", line 3"), "{text}");
    assert!(!text.contains("/projects/"), "{text}");
    // The deployment's errors are not repeated beside the api's.
    assert!(api["deployment"].get("errors").is_none(), "{api}");
    let first = text.lines().next().unwrap();
    assert!(first.contains("no weights in this project"), "{text}");
    // Once in the api's errors (the deployment's log keeps it too, with its time, as history).
    let mut without_history = api.clone();
    without_history["deployment"]["history"] = Value::Null;
    let document = without_history.to_string();
    assert_eq!(document.matches(first).count(), 1, "{first:?} in {api:#}");
    // `cortex get` and `cortex logs` say the same.
    let pretty = s.ok(s.dir.path(), &["get", "broken-init"]);
    assert!(pretty.contains("File \"predictor.py\", line 3"), "{pretty}");
    let logs = s.ok(s.dir.path(), &["logs", "broken-init"]);
    assert!(logs.contains("File \"predictor.py\", line 3"), "{logs}");
    assert!(!logs.contains("/projects/"), "{logs}");
}

/// Runs `cortex server` on a pseudo-terminal (through `script`) as `shell_command` says, and
/// returns what it printed up to its "listening on" line.
fn server_output_on_a_terminal(shell_command: &str, env: &[(&str, &str)]) -> String {
    let dir = shared_tempdir();
    let data = dir.path().join("data");
    let cmd = shell_command
        .replace("{cortex}", &cortex_bin().display().to_string())
        .replace("{data}", &data.display().to_string());
    let mut child = KillOnDrop(
        Command::new("script")
            .env("SHELL", "/bin/sh")
            .args(["-qfec", &cmd, "/dev/null"])
            .env("CORTEX_CLI_CONFIG_DIR", dir.path().join("cli"))
            .env("CORTEX_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("`script` (util-linux) is needed for this test"),
    );
    let lines = line_channel(child.0.stdout.take().unwrap());
    let seen = wait_line(&lines, "listening on");
    // Stop the server itself; `script` ends with it.
    let pid = wait_for("the server's runtime file", DEADLINE, || {
        let v: Value =
            serde_json::from_slice(&std::fs::read(data.join("server.json")).ok()?).ok()?;
        v["pid"].as_i64()
    });
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    wait_for("the server to stop", DEADLINE, || {
        child.0.try_wait().unwrap().map(|_| ())
    });
    seen.join("\n")
}

#[test]
fn cortex_server_prints_no_escape_codes_with_no_color_or_a_piped_stdout() {
    let no_color = server_output_on_a_terminal(
        "{cortex} server --listen 127.0.0.1:0 --data-dir {data}",
        &[("NO_COLOR", "1")],
    );
    assert!(no_color.contains("INFO"), "{no_color}");
    assert!(!no_color.contains('\x1b'), "{no_color:?}");
    let piped = server_output_on_a_terminal(
        "{cortex} server --listen 127.0.0.1:0 --data-dir {data} | cat",
        &[],
    );
    assert!(piped.contains("INFO"), "{piped}");
    assert!(!piped.contains('\x1b'), "{piped:?}");
}

/// A server that has the bundle when asked, then answers the first deploy as if it had gone
/// (the delete of its last API removed it meanwhile), and takes the bundle and the deploy
/// after that; each request's method and path go to `log`, one per line.
const BUNDLE_GONE_SERVER: &str = r#"
import http.server, json, sys
log, deploys = open(sys.argv[1], "a", buffering=1), []
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                n = int(self.rfile.readline().split(b";")[0], 16)
                self.rfile.read(n + 2)
                if n == 0:
                    return
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
    def answer(self, code, doc):
        data = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
    def handle_one(self):
        log.write("%s %s\n" % (self.command, self.path.split("/")[3] if self.path.count("/") > 2 else self.path))
        self.body()
        if self.command == "POST" and self.path == "/api/v2/apis":
            deploys.append(1)
            if len(deploys) == 1:
                return self.answer(404, {"kind": "not_found", "message": "bundle x was not uploaded; PUT it to /api/v2/bundles/x first"})
            return self.answer(200, [{"name": "gone", "kind": "RealtimeAPI", "action": "created", "model_id": "m", "message": "creating gone (RealtimeAPI)"}])
        if self.command == "PUT":
            return self.answer(200, {"sha256": self.path.split("/")[-1], "size": 1, "created": True})
        self.answer(200, {})
    do_HEAD = do_PUT = do_POST = do_GET = handle_one
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

#[test]
fn a_bundle_removed_between_the_look_and_the_deploy_is_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests");
    let mut server = KillOnDrop(
        Command::new("python3")
            .args(["-c", BUNDLE_GONE_SERVER])
            .arg(&log)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.0.stdout.take().unwrap()),
        &mut port,
    )
    .unwrap();
    let project = dir.path().join("project");
    copy_dir(&example("command-realtime"), &project);
    let mut cmd = cortex_at(dir.path(), &format!("http://127.0.0.1:{}", port.trim()));
    cmd.current_dir(&project).args(["deploy", "-y"]);
    let out = output_within(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("creating gone (RealtimeAPI)"),
        "{}",
        stdout(&out)
    );
    let requests = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        requests,
        "HEAD bundles\nPOST apis\nPUT bundles\nPOST apis\n"
    );
}

/// A server that answers every request with `status` and a JSON body of about `mib` MiB,
/// streamed in chunks (never held whole): one long string, or with `error` the
/// `{"kind","message"}` of an error whose message is that long. With `length` it says the
/// body's length up front; without, the body is chunked.
fn huge_answer_server(status: &str, mib: usize, error: bool, length: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let status = status.to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let status = status.clone();
            std::thread::spawn(move || answer_huge(conn, &status, mib, error, length));
        }
    });
    url
}

fn answer_huge(mut conn: TcpStream, status: &str, mib: usize, error: bool, length: bool) {
    // The request's head (its body, if any, is never read: the answer comes first).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let (open, close): (&[u8], &[u8]) = if error {
        (br#"{"kind":"internal","message":""#, br#""}"#)
    } else {
        (b"\"", b"\"")
    };
    let total = open.len() + (mib << 20) + close.len();
    let framing = if length {
        format!("Content-Length: {total}")
    } else {
        "Transfer-Encoding: chunked".to_string()
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{framing}\r\nConnection: close\r\n\r\n"
    );
    if conn.write_all(head.as_bytes()).is_err() {
        return;
    }
    // The client may go away once it has read enough: then a write fails, and that is all.
    let _ = send_huge_body(&mut conn, (open, close), mib, length);
}

/// `open`, `mib` MiB of `y`, then `close`, each piece as a chunk unless `length` was said.
fn send_huge_body(
    conn: &mut TcpStream,
    (open, close): (&[u8], &[u8]),
    mib: usize,
    length: bool,
) -> std::io::Result<()> {
    let piece = vec![b'y'; 1 << 20];
    let mut send = |data: &[u8]| -> std::io::Result<()> {
        if length {
            return conn.write_all(data);
        }
        conn.write_all(format!("{:x}\r\n", data.len()).as_bytes())?;
        conn.write_all(data)?;
        conn.write_all(b"\r\n")
    };
    send(open)?;
    for _ in 0..mib {
        send(&piece)?;
    }
    send(close)?;
    if !length {
        send(b"")?;
    }
    Ok(())
}

/// Runs `cortex args...` against `url` with time enough to read a large answer.
fn cortex_against(url: &str, args: &[&str]) -> Output {
    let cfg = tempfile::tempdir().unwrap();
    let mut cmd = cortex_at(cfg.path(), url);
    cmd.env("CORTEX_CLIENT_TIMEOUT", "30").args(args);
    output_within(cmd, Duration::from_secs(120))
}

#[test]
fn an_answer_larger_than_any_cortex_answer_is_refused_not_read_whole() {
    // 80 MiB of answer: said up front, and streamed without a length.
    for length in [true, false] {
        let url = huge_answer_server("200 OK", 80, false, length);
        for args in [&["get", "x"][..], &["get", "x", "-o", "json"]] {
            let out = cortex_against(&url, args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {}", err.len());
            assert!(err.len() < 1024, "{args:?}: {} bytes of stderr", err.len());
            assert!(
                err.contains("is larger than 64 MiB") && err.contains(&url),
                "{args:?}: {err}"
            );
            if args.contains(&"json") {
                error_document(&out, "protocol");
            }
        }
    }
}

#[test]
fn a_servers_long_error_message_is_quoted_cut_short() {
    // A 1 MiB message in an error document.
    let url = huge_answer_server("500 Internal Server Error", 1, true, true);
    for args in [&["get", "x"][..], &["get", "x", "-o", "json"]] {
        let out = cortex_against(&url, args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(err.len() < 8192, "{args:?}: {} bytes of stderr", err.len());
        assert!(
            err.contains(&format!("… ({} more bytes)", (1 << 20) - 4096)),
            "{args:?}: {}",
            err.get(err.len().saturating_sub(200)..).unwrap_or(&err)
        );
        if args.contains(&"json") {
            let doc = error_document(&out, "server_error");
            assert!(doc.to_string().len() < 8192);
        }
    }
    // A 1 MiB string where the answer is an object: serde's message quotes it, short too.
    let url = huge_answer_server("200 OK", 1, false, true);
    let out = cortex_against(&url, &["get", "x", "-o", "json"]);
    let err = stderr(&out);
    assert!(err.len() < 8192, "{} bytes of stderr", err.len());
    assert!(err.contains("more bytes)"), "{err}");
    error_document(&out, "protocol");
}
