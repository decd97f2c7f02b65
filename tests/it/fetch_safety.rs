//! What a job makes the server read: `delimited_files` URLs only on addresses it may fetch
//! from (every hop, redirects included), and files beneath `--data-root` opened without
//! following links when they are read.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use serde_json::{json, Value};

use crate::batch::{deploy_batch, read, submit, submit_raw, wait_job, SUMMER};
use crate::harness::{write, Server, DEADLINE};

/// A loopback HTTP server answering every request with `answer(path)` (a whole response);
/// its URL and how many connections it has had.
fn serve(
    ip: &str,
    answer: impl Fn(&str) -> String + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let (count, answer) = (seen.clone(), Arc::new(answer));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            count.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let n = conn.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                let _ = conn.write_all(answer(&path).as_bytes());
            });
        }
    });
    (url, seen)
}

fn ok_body(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn redirect_to(location: &str) -> String {
    format!("HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
}

fn files(paths: &[&str]) -> String {
    json!({"workers": 1, "delimited_files": {"paths": paths, "batch_size": 1}}).to_string()
}

#[test]
fn delimited_files_on_loopback_private_and_link_local_addresses_are_refused_by_default() {
    let s = Server::start();
    deploy_batch(&s, "ssrf", SUMMER, "");
    let (url, seen) = serve("127.0.0.1", |_| ok_body("1\n"));
    let port = url.rsplit(':').next().unwrap().to_string();
    let refused = [
        (
            format!("{url}/items.jsonl"),
            "127.0.0.1 is a loopback address",
        ),
        (format!("{}/healthz", s.url), "is a loopback address"),
        (
            format!("http://localhost:{port}/items.jsonl"),
            "localhost resolves to a loopback address",
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/items.jsonl"),
            "is a loopback address",
        ),
        (
            "http://169.254.169.254/latest/meta-data".to_string(),
            "169.254.169.254 is a link-local address",
        ),
        (
            "http://10.0.0.1/items.jsonl".to_string(),
            "10.0.0.1 is a private address (RFC 1918)",
        ),
        (
            "http://[fd00::1]/items.jsonl".to_string(),
            "is a private address (unique local",
        ),
        (
            "http://100.64.0.1/items.jsonl".to_string(),
            "is a shared address (carrier-grade NAT",
        ),
    ];
    for (path, rule) in refused {
        let (status, v) = submit_raw(&s, "ssrf", &files(&[&path]));
        assert_eq!(status, 403, "{path}: {v}");
        assert_eq!(v["kind"], "forbidden", "{v}");
        let message = v["message"].as_str().unwrap();
        assert!(message.starts_with("delimited_files.paths[0]: "), "{v}");
        assert!(message.contains(rule), "{path}: {v}");
        assert!(message.contains("--allow-fetch"), "{v}");
    }
    assert_eq!(seen.load(Ordering::SeqCst), 0, "nothing was fetched");
}

#[test]
fn a_redirect_to_a_forbidden_address_ends_the_job_without_fetching_it() {
    // Only 127.0.0.2 is allowed; what it redirects to on 127.0.0.1 is not.
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_ALLOW_FETCH", "127.0.0.2/32")]);
    let p = deploy_batch(&s, "hops", SUMMER, "");
    let results = p.join("results");
    std::fs::create_dir_all(&results).unwrap();
    let (secret, secret_seen) = serve("127.0.0.1", |_| ok_body("424242424\n"));
    let secret_port = secret.rsplit(':').next().unwrap().to_string();
    let by_name = format!("http://localhost:{secret_port}/secret.jsonl");
    let by_address = format!("{secret}/secret.jsonl");
    let (hop, _) = serve("127.0.0.2", move |path| match path {
        "/to-address" => redirect_to(&by_address),
        "/to-name" => redirect_to(&by_name),
        _ => ok_body("1\n2\n"),
    });
    let config = json!({"results": results});
    let job_of = |path: &str| {
        submit(
            &s,
            "hops",
            json!({"workers": 1, "delimited_files": {"paths": [format!("{hop}{path}")], "batch_size": 1}, "config": config}),
        )
    };

    // The allowed host itself is read.
    let id = job_of("/items.jsonl");
    wait_job(&s, "hops", &id, "status_succeeded");

    for (path, rule) in [
        ("/to-address", "127.0.0.1 is a loopback address"),
        ("/to-name", "localhost resolves to a loopback address"),
    ] {
        let id = job_of(path);
        let failed = wait_job(&s, "hops", &id, "status_enqueue_failed");
        let message = failed["message"].as_str().unwrap_or_default();
        assert!(message.contains(rule), "{path}: {failed:#}");
        assert!(!message.contains("424242424"), "{failed:#}");
        assert!(read(&results.join(format!("{id}-0"))).is_empty());
    }
    assert_eq!(
        secret_seen.load(Ordering::SeqCst),
        0,
        "the forbidden address was never connected to"
    );
}

#[test]
fn a_failed_fetch_says_no_more_than_that_it_failed() {
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_ALLOW_FETCH", "127.0.0.1/32")]);
    deploy_batch(&s, "oracle", SUMMER, "");
    // A closed port and a port that answers something that is not HTTP end the same way.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}/a.jsonl", closed.local_addr().unwrap());
    drop(closed);
    let (garbage, _) = serve("127.0.0.1", |_| "SSH-2.0-OpenSSH_9.6\r\n".to_string());
    let mut messages = Vec::new();
    for url in [closed_url, format!("{garbage}/a.jsonl")] {
        let id = submit(&s, "oracle", serde_json::from_str(&files(&[&url])).unwrap());
        let failed = wait_job(&s, "oracle", &id, "status_enqueue_failed");
        let message = failed["message"].as_str().unwrap().to_string();
        messages.push(message.replace(&url, "URL"));
    }
    assert_eq!(
        messages[0], "URL: cannot fetch it: no answer",
        "{messages:?}"
    );
    assert_eq!(messages[0], messages[1]);
}

#[test]
fn a_data_root_directory_swapped_for_a_link_after_submission_is_not_followed() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("in")).unwrap();
    write(root.path(), "in/items.jsonl", "1\n");
    write(outside.path(), "items.jsonl", "1000\n");
    let s = Server::start_with(
        "127.0.0.1:0",
        &[
            ("CORTEX_DATA_ROOT", root.path().to_str().unwrap()),
            ("CORTEX_ALLOW_FETCH", "127.0.0.1/32"),
        ],
    );
    let p = deploy_batch(&s, "swap", SUMMER, "");
    let results = p.join("results");
    std::fs::create_dir_all(&results).unwrap();
    // The job's first file is a URL that answers only when told: its second, under the root,
    // is read after that, and the directory it is in is swapped in between.
    let (asked_tx, asked) = mpsc::channel::<()>();
    let (release, released) = mpsc::channel::<()>();
    let (asked_tx, released) = (
        std::sync::Mutex::new(asked_tx),
        std::sync::Mutex::new(released),
    );
    let (held, _) = serve("127.0.0.1", move |_| {
        let _ = asked_tx.lock().unwrap().send(());
        let _ = released.lock().unwrap().recv_timeout(DEADLINE);
        ok_body("2\n")
    });
    let id = submit(
        &s,
        "swap",
        json!({
            "workers": 1,
            "delimited_files": {"paths": [format!("{held}/first.jsonl"), "in/items.jsonl"], "batch_size": 1},
            "config": {"results": results},
        }),
    );
    asked
        .recv_timeout(DEADLINE)
        .expect("the first file is fetched");
    std::fs::rename(root.path().join("in"), root.path().join("in.old")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("in")).unwrap();
    release.send(()).unwrap();

    let failed = wait_job(&s, "swap", &id, "status_enqueue_failed");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .starts_with("in/items.jsonl: cannot open it: it passes through a symbolic link"),
        "{failed:#}"
    );
    for seq in 0..2 {
        let batch = read(&results.join(format!("{id}-{seq}")));
        assert!(!batch.contains("1000"), "read outside the root: {batch}");
    }
    // Submitted now, the same path is refused at once.
    let (status, v): (u16, Value) = submit_raw(&s, "swap", &files(&["in/items.jsonl"]));
    assert_eq!(status, 403, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("passes through a symbolic link"),
        "{v}"
    );
}
