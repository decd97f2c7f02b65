//! What tenants write (deployment messages, an `__init__`'s exception, a replica's output)
//! reaches the user's terminal as text, never as escape sequences that drive it; scripts and
//! pipes get it as it was.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bazaar::{curl, Worker};
use crate::harness::*;

/// A title change, a screen clear, a C1 CSI and a right-to-left override.
const HOSTILE: &str = "\u{1b}]0;PWNED\u{7}\u{1b}[2J \u{9b}2J \u{202e}gpj.exe";
/// How each is shown.
const SHOWN: &str = "\\u{1b}]0;PWNED\\u{7}\\u{1b}[2J \\u{9b}2J \\u{202e}gpj.exe";

#[track_caller]
fn assert_inert(text: &str) {
    for c in ['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}'] {
        assert!(!text.contains(c), "{c:?} in {text:?}");
    }
}

#[test]
fn cortex_get_shows_deployment_messages_and_init_errors_escaped() {
    let s = Server::start();
    // A replica reports a warning through its job token.
    let w = Worker::new(&s, "reporter");
    w.deploy(&s);
    let job = w.job_token(None);
    let body = serde_json::json!({"level": "warning", "message": HOSTILE}).to_string();
    let log = format!("{}/api/v2/deploy/log", s.url);
    assert_eq!(curl("POST", &log, Some(&job), Some(&body)).0, 200);
    let text = s.ok(&w.dir, &["get", "reporter"]);
    assert_inert(&text);
    assert!(text.contains("warning ("), "{text}");
    assert!(text.contains(SHOWN), "{text}");
    // A script reads the message as it was sent.
    let doc: Value = serde_json::from_str(&s.ok(&w.dir, &["get", "reporter", "-o", "json"]))
        .expect("one JSON document");
    let history = doc["deployment"]["history"].as_array().expect("a history");
    assert!(history.iter().any(|m| m["message"] == HOSTILE), "{doc}");

    // A predictor whose __init__ raises with a clipboard write (OSC 52) in its message.
    let p = s.python_project(
        "clipboard",
        "RealtimeAPI",
        "class PythonPredictor:\n    def __init__(self, config):\n        raise RuntimeError('bad \\x1b]52;c;cm0gLXJmIH4=\\x07 weights')\n\n    def predict(self, payload):\n        return 1\n",
        "",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("clipboard", "error");
    let text = s.ok(&p, &["get", "clipboard"]);
    assert_inert(&text);
    assert!(
        text.contains("RuntimeError: bad \\u{1b}]52;c;cm0gLXJmIH4=\\u{7} weights"),
        "{text}"
    );
    // The table of every API too.
    let all = s.ok(&p, &["get"]);
    assert_inert(&all);
}

/// Runs `cmd` with its stdout on a new terminal (a pty); what the terminal received, and the
/// command's output otherwise (stderr).
fn on_a_terminal(mut cmd: Command) -> (Output, Vec<u8>) {
    let (mut main_fd, mut other_fd) = (-1, -1);
    // SAFETY: openpty writes the two descriptors it opens; no name, settings or size.
    let rc = unsafe {
        libc::openpty(
            &mut main_fd,
            &mut other_fd,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned here only.
    let (mut main, other) = unsafe { (File::from_raw_fd(main_fd), File::from_raw_fd(other_fd)) };
    for fd in [main.as_raw_fd(), other.as_raw_fd()] {
        // SAFETY: fcntl on descriptors this function owns.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    // SAFETY: as above; the terminal's reads never block the test.
    unsafe {
        let flags = libc::fcntl(main.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(main.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(other))
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut shown = Vec::new();
    let mut buf = [0u8; 65536];
    let mut read_all = |shown: &mut Vec<u8>| loop {
        match main.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => shown.extend_from_slice(&buf[..n]),
            // Nothing more for now (EAGAIN), or the command is gone (EIO).
            Err(_) => return,
        }
    };
    let end = Instant::now() + DEADLINE;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "the command did not end");
        read_all(&mut shown);
        std::thread::sleep(Duration::from_millis(20));
    }
    read_all(&mut shown);
    (child.wait_with_output().unwrap(), shown)
}

#[test]
fn cortex_logs_escapes_a_replicas_sequences_on_a_terminal_and_pipes_them_as_they_are() {
    let s = Server::start();
    let p = s.python_project(
        "noisy",
        "RealtimeAPI",
        "print('\\x1b[31mred\\x1b[0m \\x1b]0;PWNED\\x07\\x1b[2J \\u202egpj.exe', flush=True)\n\nclass PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return 1\n",
        "",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("noisy", "live");
    // Piped: the bytes as the replica wrote them.
    let piped = s.logs_with(&p, &["noisy"], "PWNED");
    assert!(
        piped.contains("\u{1b}[31mred\u{1b}[0m \u{1b}]0;PWNED\u{7}\u{1b}[2J \u{202e}gpj.exe"),
        "{piped:?}"
    );
    // On a terminal: colours pass, the rest is shown escaped.
    let mut cmd = s.cortex();
    cmd.current_dir(&p).args(["logs", "noisy", "--no-follow"]);
    let (out, shown) = on_a_terminal(cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = String::from_utf8_lossy(&shown).into_owned();
    assert!(
        shown.contains("\u{1b}[31mred\u{1b}[0m \\u{1b}]0;PWNED\\u{7}\\u{1b}[2J \\u{202e}gpj.exe"),
        "{shown:?}"
    );
    assert_inert(&shown.replace("\u{1b}[31m", "").replace("\u{1b}[0m", ""));
}
