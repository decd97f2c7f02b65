//! Nothing is lost silently: a server does not start over on a database that was emptied or
//! damaged beside an earlier server's data, and a delete that cannot be stored stops nothing.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::{cortex_bin, wait_for, KillOnDrop, Server, DEADLINE};

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
    assert!(err.contains("(admin.token, bundles, projects)"), "{err}");
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
