//! Bounded resources: slow or idle clients, large bodies and uploads, and the gateway's idle
//! connections to replicas cannot take the server down.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::*;

fn server_port(s: &Server) -> u16 {
    s.url.rsplit(':').next().unwrap().parse().unwrap()
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Waits until the server closes `conn` (end of stream or reset); how long it took.
fn closed_within(conn: &mut TcpStream, deadline: Duration) -> Option<Duration> {
    let started = Instant::now();
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while started.elapsed() < deadline {
        match conn.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

/// A server whose header and idle timeouts are these many seconds.
fn with_timeouts(header_read: u64, idle: u64) -> Server {
    let (header_read, idle) = (header_read.to_string(), idle.to_string());
    Server::start_with(
        "127.0.0.1:0",
        &[
            ("CORTEX_HEADER_READ_TIMEOUT_SECS", header_read.as_str()),
            ("CORTEX_IDLE_TIMEOUT_SECS", idle.as_str()),
        ],
    )
}

/// A connection that has sent part of a request's headers and nothing more.
fn slowloris(s: &Server) -> TcpStream {
    let mut conn = TcpStream::connect(("127.0.0.1", server_port(s))).unwrap();
    conn.write_all(b"POST /anything HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    conn
}

#[test]
fn a_connection_that_never_finishes_its_headers_is_closed_at_the_header_timeout() {
    let s = with_timeouts(1, 60);
    let mut conn = slowloris(&s);
    let took = closed_within(&mut conn, Duration::from_secs(15))
        .expect("the server kept a connection that never finished its headers");
    assert!(took >= Duration::from_millis(500), "closed after {took:?}");
}

#[test]
fn a_head_trickled_byte_by_byte_is_closed_at_the_header_timeout() {
    let s = with_timeouts(1, 60);
    let mut conn = slowloris(&s);
    let mut writer = conn.try_clone().unwrap();
    // A byte of an endless header every 100 ms: the connection is never quiet.
    let trickle = std::thread::spawn(move || {
        while writer.write_all(b"y").is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let took = closed_within(&mut conn, Duration::from_secs(15))
        .expect("the server kept a connection that trickled its headers forever");
    assert!(took < Duration::from_secs(8), "closed after {took:?}");
    drop(conn);
    trickle.join().unwrap();
}

#[test]
fn a_connection_that_sends_nothing_is_closed_at_the_header_timeout() {
    let s = with_timeouts(1, 60);
    let mut conn = TcpStream::connect(("127.0.0.1", server_port(&s))).unwrap();
    let took = closed_within(&mut conn, Duration::from_secs(15))
        .expect("the server kept a connection that never sent a head");
    assert!(took >= Duration::from_millis(500), "closed after {took:?}");
}

#[test]
fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    let s = with_timeouts(60, 1);
    let mut conn = TcpStream::connect(("127.0.0.1", server_port(&s))).unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(
        closed_within(&mut conn, Duration::from_secs(15)).is_some(),
        "the server kept an idle keep-alive connection"
    );
}

#[test]
fn slow_connections_past_the_cap_do_not_lock_a_normal_client_out() {
    let s = Server::start_with(
        "127.0.0.1:0",
        &[
            ("CORTEX_HEADER_READ_TIMEOUT_SECS", "1"),
            ("CORTEX_MAX_CONNECTIONS", "8"),
        ],
    );
    // The server gets few file descriptors: more slow connections than it has left.
    let pid = s.pid();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64;
    let limit = libc::rlimit {
        rlim_cur: open + 16,
        rlim_max: open + 16,
    };
    let set = unsafe {
        libc::prlimit(
            pid as i32,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(set, 0, "cannot lower the server's open-file limit");
    let slow: Vec<TcpStream> = (0..40).map(|_| slowloris(&s)).collect();

    let started = Instant::now();
    let served = wait_for(
        "a normal client to be served",
        Duration::from_secs(40),
        || {
            reqwest::blocking::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap()
                .get(format!("{}/healthz", s.url))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
        },
    );
    assert!(served.status().is_success());
    eprintln!("served after {:?}", started.elapsed());
    drop(slow);
}

/// A command API that reads its request body in pieces and answers how many bytes came.
fn deploy_counter(s: &Server) {
    let p = s.project("counter");
    write(
        &p,
        "server.py",
        r#"import http.server, json, os

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def answer(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.answer({"ok": True})
    def do_POST(self):
        left, got = int(self.headers.get("Content-Length") or 0), 0
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            got, left = got + len(chunk), left - len(chunk)
        self.answer({"bytes": got})

server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["CORTEX_PORT"])), Handler)
server.daemon_threads = True
server.serve_forever()
"#,
    );
    write(
        &p,
        "cortex.yaml",
        "- name: counter\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 server.py\n  networking:\n    timeout: 120s\n",
    );
    s.ok(&p, &["deploy"]);
    s.wait_status("counter", "live");
}

/// POSTs `len` bytes to `api` with a Content-Length, generated as they are sent.
fn post_sized(url: &str, len: u64) -> (u16, serde_json::Value) {
    let body = reqwest::blocking::Body::sized(std::io::repeat(b'x').take(len), len);
    let resp = http().post(url).body(body).send().unwrap();
    (resp.status().as_u16(), resp.json().unwrap())
}

/// POSTs `len` bytes to `api` without a Content-Length (chunked).
fn post_chunked(url: &str, len: u64) -> (u16, serde_json::Value) {
    let body = reqwest::blocking::Body::new(std::io::repeat(b'x').take(len));
    let resp = http().post(url).body(body).send().unwrap();
    (resp.status().as_u16(), resp.json().unwrap())
}

#[test]
fn many_large_bodies_at_once_keep_the_servers_memory_bounded() {
    let s = Server::start();
    deploy_counter(&s);
    let pid = s.pid();
    let before = status_kib(pid, "VmHWM");
    const BODIES: u64 = 12;
    const SIZE: u64 = 32 << 20;
    let url = format!("{}/counter", s.url);
    let senders: Vec<_> = (0..BODIES)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || post_sized(&url, SIZE))
        })
        .collect();
    for sender in senders {
        let (status, body) = sender.join().unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["bytes"], SIZE, "{body}");
    }
    let grew_mib = status_kib(pid, "VmHWM").saturating_sub(before) >> 10;
    // Held whole, these bodies would take BODIES × 32 MiB = 384 MiB.
    assert!(
        grew_mib < 64,
        "the server's peak memory grew by {grew_mib} MiB for {BODIES} bodies of 32 MiB"
    );
}

#[test]
fn bodies_without_a_length_share_a_memory_budget_and_413_still_ends_them() {
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_MAX_BUFFERED_BODIES_MB", "1")]);
    deploy_counter(&s);
    let url = format!("{}/counter", s.url);
    let (status, body) = post_chunked(&url, 100 << 10);
    assert_eq!(
        (status, &body["bytes"]),
        (200, &serde_json::json!(100 << 10))
    );

    // Past the server's budget for bodies read whole: refused, and told how to avoid it.
    let (status, body) = post_chunked(&url, 2 << 20);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["kind"], "overloaded");
    assert!(
        body["message"].as_str().unwrap().contains("Content-Length"),
        "{body}"
    );
    // The same size with a Content-Length is streamed, whatever the budget.
    let (status, body) = post_sized(&url, 2 << 20);
    assert_eq!((status, &body["bytes"]), (200, &serde_json::json!(2 << 20)));

    // Over the api's limit part way through a body: 413.
    let p = s.project("counter");
    let yaml = std::fs::read_to_string(p.join("cortex.yaml")).unwrap();
    write(
        &p,
        "cortex.yaml",
        &yaml.replace("timeout: 120s", "timeout: 120s\n    max_request_size: 64Ki"),
    );
    s.ok(&p, &["deploy"]);
    wait_for("the limit to apply", DEADLINE, || {
        let (status, body) = post_chunked(&url, 100 << 10);
        (status == 413).then_some(body)
    });
    let (status, body) = post_chunked(&url, 100 << 10);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["kind"], "payload_too_large");
    let (status, body) = post_sized(&url, 100 << 10);
    assert_eq!(status, 413, "{body}");
}

/// The server's open TCP connections to other ports than its own (to replicas).
fn outgoing_connections(pid: u32, own_port: u16) -> usize {
    let mut inodes = std::collections::HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy().into_owned();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                inodes.insert(inode.to_string());
            }
        }
    }
    let mut n = 0;
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local_port = cols[1].rsplit(':').next().unwrap();
            let port = u16::from_str_radix(local_port, 16).unwrap();
            // ESTABLISHED or CLOSE_WAIT: a socket the server still holds.
            let open = matches!(cols[3], "01" | "08");
            if open && port != own_port && inodes.contains(cols[9]) {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn the_gateways_idle_connections_to_replicas_are_closed_after_a_burst() {
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_REPLICA_IDLE_TIMEOUT_SECS", "3")]);
    deploy_counter(&s);
    let (pid, port) = (s.pid(), server_port(&s));
    // The engine's own readiness checks may keep a connection of their own.
    let before = outgoing_connections(pid, port);
    let url = format!("{}/counter", s.url);
    let burst: Vec<_> = (0..12)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || post_sized(&url, 4 << 20))
        })
        .collect();
    for b in burst {
        assert_eq!(b.join().unwrap().0, 200);
    }
    let after_burst = outgoing_connections(pid, port);
    assert!(
        after_burst >= before + 2,
        "the burst left {after_burst} connection(s) to the replica ({before} before it)"
    );
    wait_for(
        "the idle connections to the replica to close",
        Duration::from_secs(20),
        || (outgoing_connections(pid, port) <= before).then_some(()),
    );
}

/// A tar.gz holding one incompressible file of `len` bytes, written to `path`; its SHA-256.
fn write_bundle(path: &Path, len: usize) -> String {
    use sha2::Digest;
    let mut data = vec![0u8; len];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_size(len as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "data.bin", &data[..]).unwrap();
    let bytes = tar.into_inner().unwrap().finish().unwrap();
    std::fs::write(path, &bytes).unwrap();
    hex::encode(sha2::Sha256::digest(&bytes))
}

fn put_bundle(s: &Server, sha: &str, file: &Path) -> (u16, serde_json::Value) {
    let resp = http()
        .put(format!("{}/api/v2/bundles/{sha}", s.url))
        .bearer_auth(&s.token)
        .body(std::fs::File::open(file).unwrap())
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.json().unwrap())
}

fn head_bundle(s: &Server, sha: &str) -> u16 {
    http()
        .head(format!("{}/api/v2/bundles/{sha}", s.url))
        .bearer_auth(&s.token)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn a_large_bundle_upload_goes_to_disk_not_memory_and_a_wrong_sha_stores_nothing() {
    let s = Server::start();
    let pid = s.pid();
    let file = s.dir.path().join("big.tar.gz");
    let sha = write_bundle(&file, 160 << 20);
    let before = status_kib(pid, "VmHWM");
    let (status, body) = put_bundle(&s, &sha, &file);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["created"], true);
    let grew_mib = status_kib(pid, "VmHWM").saturating_sub(before) >> 10;
    assert!(
        grew_mib < 48,
        "a 160 MiB upload grew the server's peak memory by {grew_mib} MiB"
    );
    assert_eq!(head_bundle(&s, &sha), 200);

    let wrong = "a".repeat(64);
    let (status, body) = put_bundle(&s, &wrong, &file);
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("SHA-256"),
        "{body}"
    );
    assert_eq!(head_bundle(&s, &wrong), 404);
    let left: Vec<_> = std::fs::read_dir(s.data_dir().join("bundles"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, [format!("{sha}.tar.gz")], "{left:?}");
}

/// A small tmpfs mounted over a directory until dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|st| st.success());
        ok.then(|| SmallDisk(dir.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_bundle_upload_on_a_full_disk_is_507_and_stores_nothing() {
    let s = Server::start();
    let bundles = s.data_dir().join("bundles");
    let Some(_disk) = SmallDisk::mount(&bundles, "1m") else {
        // Mounting a small disk needs root (the project's test machines run as root).
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    let file = s.dir.path().join("big.tar.gz");
    let sha = write_bundle(&file, 3 << 20);
    let (status, body) = put_bundle(&s, &sha, &file);
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["kind"], "insufficient_storage");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("nothing was stored"),
        "{body}"
    );
    assert!(!body["message"]
        .as_str()
        .unwrap()
        .contains(&*s.data_dir().to_string_lossy()));
    assert_eq!(head_bundle(&s, &sha), 404);
    assert_eq!(std::fs::read_dir(&bundles).unwrap().count(), 0);
}
