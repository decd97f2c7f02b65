//! Nothing is lost silently: a server does not start over on a database that was emptied or
//! damaged beside an earlier server's data, a delete that cannot be stored stops nothing,
//! and a disk full for a while in the middle of a job fails no batch and stalls no job.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{
    copy_dir, cortex_bin, http, shared_tempdir, wait_for, KillOnDrop, Server, DEADLINE,
};
use crate::redelivery::{recorder, runs};

/// Starts `cortex server` on `data_dir`, which must refuse to start: its error output.
fn start_refused(data_dir: &Path) -> String {
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new(cortex_bin())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let status = wait_for("the server to exit (or start)", DEADLINE, || {
        if let Some(status) = child.0.try_wait().unwrap() {
            return Some(status);
        }
        assert!(
            !data_dir.join("server.json").exists(),
            "the server started: {}",
            std::fs::read_to_string(log.path()).unwrap_or_default()
        );
        None
    });
    assert_eq!(status.code(), Some(1));
    std::fs::read_to_string(log.path()).unwrap()
}

/// A server with one deployed API (so bundles and projects exist), stopped.
fn stopped_server_with_data() -> Server {
    let mut s = Server::start();
    let p = s.example_project("command-realtime");
    s.ok(&p, &["deploy"]);
    s.wait_status("reverser", "live");
    assert!(s.stop());
    s
}

#[test]
fn an_empty_database_beside_an_earlier_servers_data_refuses_to_start() {
    let s = stopped_server_with_data();
    let data = s.data_dir();
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    std::fs::write(data.join("cortex.db"), "").unwrap();
    for side in ["cortex.db-wal", "cortex.db-shm"] {
        let _ = std::fs::remove_file(data.join(side));
    }
    let err = start_refused(&data);
    let db = data.join("cortex.db");
    assert!(err.contains(&format!("{} is empty", db.display())), "{err}");
    assert!(err.contains("(admin.token, bundles"), "{err}");
    assert!(err.contains("Restore cortex.db from a backup"), "{err}");
    assert_eq!(
        std::fs::read_to_string(data.join("admin.token")).unwrap(),
        token,
        "the admin token is kept"
    );
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        0,
        "nothing was written"
    );
}

/// The bug an operator's backup met: a clean stop left the latest changes in `cortex.db-wal`
/// only (SQLite moves them into the file once the log passes about 4 MB), so a copy of
/// `cortex.db` alone, the file the refusals say to restore, held no api. A stopped server's
/// database file now holds everything, its log emptied.
#[test]
fn a_stopped_servers_database_file_alone_holds_every_api() {
    let s = stopped_server_with_data();
    let data = s.data_dir();
    let wal = std::fs::metadata(data.join("cortex.db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "the write-ahead log still holds changes");
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(data.join("cortex.db"), copy.path().join("cortex.db")).unwrap();
    let db = rusqlite::Connection::open(copy.path().join("cortex.db")).unwrap();
    let names: Vec<String> = db
        .prepare("SELECT name FROM models")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(names, ["reverser"]);
}

/// A copy of a running server's `cortex.db` without its write-ahead log holds no schema yet:
/// beside the earlier server's files, the server refuses it, as it does an empty one, instead
/// of starting over (and replacing the admin token).
#[test]
fn a_database_copied_without_its_write_ahead_log_refuses_to_start() {
    let s = Server::start();
    let p = s.example_project("command-realtime");
    s.ok(&p, &["deploy"]);
    s.wait_status("reverser", "live");
    let data = s.data_dir();
    let restored = tempfile::tempdir().unwrap();
    for name in ["cortex.db", "admin.token"] {
        std::fs::copy(data.join(name), restored.path().join(name)).unwrap();
    }
    copy_dir(&data.join("bundles"), &restored.path().join("bundles"));
    let err = start_refused(restored.path());
    assert!(err.contains("cortex.db holds no data (no schema"), "{err}");
    assert!(err.contains("with its cortex.db-wal"), "{err}");
    assert_eq!(
        std::fs::read(restored.path().join("admin.token")).unwrap(),
        std::fs::read(data.join("admin.token")).unwrap(),
        "the admin token is kept"
    );
}

/// The bug: a database with a damaged page started, and every command then failed with
/// "database error: database disk image is malformed", naming neither the file nor a way out.
#[test]
fn a_database_with_a_damaged_page_refuses_to_start_saying_so() {
    let s = stopped_server_with_data();
    let db = s.data_dir().join("cortex.db");
    let (page, page_size) = {
        let c = rusqlite::Connection::open(&db).unwrap();
        let page: i64 = c
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'models'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        (page as u64, size as u64)
    };
    let mut bytes = std::fs::read(&db).unwrap();
    let at = ((page - 1) * page_size) as usize;
    bytes[at..at + page_size as usize].fill(0xa5);
    std::fs::write(&db, bytes).unwrap();
    let err = start_refused(&s.data_dir());
    assert!(
        err.contains(&format!("cannot open the database {}", db.display())),
        "{err}"
    );
    assert!(
        err.contains("the database is damaged (SQLite's quick_check"),
        "{err}"
    );
    assert!(err.contains("restore it from a backup"), "{err}");
}

#[test]
fn a_database_missing_a_table_refuses_to_start_naming_it() {
    let s = stopped_server_with_data();
    let db = s.data_dir().join("cortex.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("DROP TABLE deploy_logs").unwrap();
    drop(conn);
    let err = start_refused(&s.data_dir());
    assert!(
        err.contains(&format!("cannot open the database {}", db.display())),
        "{err}"
    );
    assert!(err.contains("no table `deploy_logs`"), "{err}");
}

/// A server whose data directory is a small tmpfs of its own, mounted in a private mount
/// namespace (so nothing is left mounted however the test ends); the test reaches its files
/// through `/proc/<pid>/root`. Its output goes to `server.log` beside (not on) that disk.
pub(crate) struct SmallDiskServer {
    _child: KillOnDrop,
    pub(crate) dir: tempfile::TempDir,
    /// The data directory, as this test sees it (through the server's mount namespace).
    pub(crate) view: PathBuf,
    url: String,
    token: String,
}

impl SmallDiskServer {
    /// `None` when this process may not mount (not root).
    fn start() -> Option<SmallDiskServer> {
        SmallDiskServer::start_with(24, &[])
    }

    /// A server on a disk of `size_mb` MiB, with `env` added to its environment.
    pub(crate) fn start_with(size_mb: u32, env: &[(&str, &str)]) -> Option<SmallDiskServer> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a small tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("server");
        std::fs::create_dir_all(&data).unwrap();
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                r#"mount -t tmpfs -o size={size_mb}m cortex-small "$1" && shift && exec "$@""#
            ))
            .arg("sh")
            .arg(&data)
            .arg(cortex_bin())
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env("CORTEX_CLI_CONFIG_DIR", dir.path().join("cli"))
            .env("CORTEX_LOG", "warn")
            .env("CORTEX_SHUTDOWN_GRACE_SECS", "1")
            // The disk is small on purpose: the free-space guard must not refuse the deploy.
            .env("CORTEX_MIN_FREE_DISK_MB", "0")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("server.log")).unwrap())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut child = KillOnDrop(child);
        let view = PathBuf::from(format!("/proc/{pid}/root")).join(data.strip_prefix("/").unwrap());
        let url = wait_for("the server on a small disk", DEADLINE, || {
            if let Some(status) = child.0.try_wait().unwrap() {
                panic!("the server on a small disk exited: {status}");
            }
            let v: Value =
                serde_json::from_slice(&std::fs::read(view.join("server.json")).ok()?).ok()?;
            (v["pid"].as_u64()? == u64::from(pid)).then(|| v["url"].as_str().unwrap().to_string())
        });
        let token = std::fs::read_to_string(view.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        Some(SmallDiskServer {
            _child: child,
            dir,
            view,
            url,
            token,
        })
    }

    fn deploy_example(&self, example: &str) {
        let project = self.dir.path().join(example);
        copy_dir(&crate::harness::example(example), &project);
        self.deploy(&project);
    }

    pub(crate) fn deploy(&self, project: &Path) {
        let out = Command::new(cortex_bin())
            .arg("deploy")
            .current_dir(project)
            .env("CORTEX_CLI_CONFIG_DIR", self.dir.path().join("cli"))
            .env("CORTEX_ENDPOINT", &self.url)
            .env("CORTEX_TOKEN", &self.token)
            .env_remove("CORTEX_ENV")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", crate::harness::stderr(&out));
    }

    fn predict(&self, api: &str) -> u16 {
        http()
            .post(format!("{}/{api}", self.url))
            .header("content-type", "application/json")
            .body(r#"{"text": "ab"}"#)
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    pub(crate) fn delete(&self, api: &str) -> (u16, Value) {
        let resp = http()
            .delete(format!("{}/api/v2/apis/{api}", self.url))
            .bearer_auth(&self.token)
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
    }

    /// What the server wrote to its standard error so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Fills the disk to the last byte; the file to remove to free it again.
    fn fill(&self) -> PathBuf {
        let filler = self.view.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        for chunk in [1 << 20, 4096, 1] {
            let zeros = vec![0u8; chunk];
            while f.write_all(&zeros).is_ok() {}
        }
        let _ = f.sync_all();
        filler
    }
}

impl Drop for SmallDiskServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- server output ----\n{}-----------------------",
                self.log()
            );
        }
    }
}

#[test]
fn a_delete_that_cannot_be_stored_on_a_full_disk_stops_nothing() {
    let Some(s) = SmallDiskServer::start() else {
        return;
    };
    s.deploy_example("command-realtime");
    wait_for("reverser to answer", DEADLINE, || {
        (s.predict("reverser") == 200).then_some(())
    });

    let filler = s.fill();
    let (status, v) = s.delete("reverser");
    assert_eq!(status, 507, "{v}");
    assert_eq!(v["kind"], "insufficient_storage", "{v}");
    assert_eq!(s.predict("reverser"), 200, "the api still answers: {v}");
    // The operator sees it in the server's log, not only the client.
    assert!(s.log().contains("answered 507: "), "{}", s.log());
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("reverser was not deleted and keeps running"),
        "{v}"
    );

    std::fs::remove_file(filler).unwrap();
    let (status, v) = s.delete("reverser");
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        s.predict("reverser"),
        404,
        "deleted once it could be stored"
    );
}

impl SmallDiskServer {
    /// Deploys the BatchAPI `recorder` (`redelivery::recorder`, a few tenths of a second a
    /// batch, so that a disk filled mid-job finds outcomes to write).
    fn deploy_recorder(&self) {
        let project = self.dir.path().join("recorder");
        std::fs::create_dir_all(&project).unwrap();
        crate::harness::write(&project, "predictor.py", &recorder(0.3));
        crate::harness::write(
            &project,
            "cortex.yaml",
            "- name: recorder\n  kind: BatchAPI\n  predictor:\n    type: python\n    path: predictor.py\n",
        );
        self.deploy(&project);
    }

    /// Submits a job of `items` one-item batches to `recorder` on one worker (with `timeout`
    /// seconds, if given), once it has run two of them; its id.
    fn submit_running(&self, results: &Path, items: usize, timeout: Option<u64>) -> String {
        let items: Vec<usize> = (0..items).collect();
        let mut job = json!({
            "workers": 1,
            "item_list": {"items": items, "batch_size": 1},
            "config": {"results": results},
        });
        if let Some(t) = timeout {
            job["timeout"] = json!(t);
        }
        let submitted: Value = http()
            .post(format!("{}/recorder", self.url))
            .json(&job)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let id = submitted["job_id"].as_str().expect("a job id").to_string();
        wait_for("the worker to run batches", DEADLINE, || {
            (runs(results).len() >= 2).then_some(())
        });
        id
    }

    /// The job's status once it ended.
    fn ended(&self, id: &str) -> Value {
        wait_for("the job to end once the disk is free", DEADLINE, || {
            let j: Value = http()
                .get(format!("{}/recorder/{id}", self.url))
                .send()
                .ok()?
                .json()
                .ok()?;
            let status = &j["job_status"];
            status.get("end_time").is_some().then(|| status.clone())
        })
    }

    /// Waits until the server logged `line`; when it first saw it.
    fn logged(&self, line: &str) -> Instant {
        wait_for(&format!("{line:?} in the server's log"), DEADLINE, || {
            self.log().contains(line).then(Instant::now)
        })
    }
}

/// A directory for the recorder's runs, which its worker's user may write (the umask of the
/// tests is 0), off the small disk; the temp dir that holds it.
fn results_dir() -> (tempfile::TempDir, PathBuf) {
    let shared = shared_tempdir();
    let results = shared.path().join("results");
    std::fs::create_dir(&results).unwrap();
    (shared, results)
}

/// How long the disk stays full once the server failed to write a batch's outcome: longer
/// than the five tries the server once gave an outcome, and than a lease's visibility.
const OUTAGE: Duration = Duration::from_secs(7);

#[test]
fn a_disk_full_for_a_while_mid_job_fails_no_batch() {
    const ITEMS: usize = 12;
    // Leases lapse during the outage unless the server keeps them.
    let Some(s) = SmallDiskServer::start_with(40, &[("CORTEX_BATCH_VISIBILITY_MS", "3000")]) else {
        return;
    };
    s.deploy_recorder();
    let (_shared, results) = results_dir();
    let id = s.submit_running(&results, ITEMS, None);

    let filler = s.fill();
    let failing_since = s.logged("cannot write the batches of job");
    // The outage is the point of the test: it must outlast what the server once put up with.
    wait_for("the outage to last", DEADLINE, || {
        (failing_since.elapsed() >= OUTAGE).then_some(())
    });
    assert!(
        runs(&results).len() < ITEMS,
        "the disk was full in the middle of the job"
    );
    std::fs::remove_file(filler).unwrap();

    let done = s.ended(&id);
    assert_eq!(done["status"], "status_succeeded", "{done:#}");
    assert_eq!(done["batch_metrics"]["succeeded"], ITEMS, "{done:#}");
    assert_eq!(done["batch_metrics"]["failed"], 0, "{done:#}");
    let mut ran = runs(&results);
    ran.sort();
    ran.dedup();
    assert_eq!(ran.len(), ITEMS, "every batch ran");
    assert_eq!(
        runs(&results).len(),
        ITEMS,
        "no batch ran twice: nothing was lost, not even a lease"
    );
}

/// A job whose end comes while the disk is full (here, its timeout) is recorded as ended
/// once the disk frees, not left running with nothing left to end it.
#[test]
fn a_job_that_ends_on_a_full_disk_is_recorded_once_it_frees() {
    let Some(s) = SmallDiskServer::start_with(40, &[]) else {
        return;
    };
    s.deploy_recorder();
    let (_shared, results) = results_dir();
    // Far more batches than the timeout leaves time for.
    let id = s.submit_running(&results, 400, Some(15));

    let filler = s.fill();
    s.logged("cannot record the end of job");
    std::fs::remove_file(filler).unwrap();

    let done = s.ended(&id);
    assert_eq!(done["status"], "status_timed_out", "{done:#}");
    assert!(
        runs(&results).len() < 400,
        "the job timed out in the middle"
    );
}
