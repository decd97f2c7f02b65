//! Secrets stay with their owner: other readers see `predictor.env` keys without their values,
//! a copy saved by a reader runs without the base's `.env` and `predictor.env`, and a bundle is
//! usable only by who uploaded it (or owns an api that runs it).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::bazaar::{curl, deploy_url};
use crate::harness::*;
use crate::permissions::{cortex_as, user};

/// A command predictor that answers each POST with what it can see of its secrets: its whole
/// environment and the project's `.env` (`MARK` tells which version of it runs).
const SPY: &str = r#"
import http.server, json, os

MARK = "base"

def seen():
    dotenv = None
    if os.path.exists(".env"):
        with open(".env") as f:
            dotenv = f.read()
    return {"mark": MARK, "environ": dict(os.environ), "dotenv": dotenv}

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def reply(self, body):
        body = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.reply({"ok": True})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.reply(seen())

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["CORTEX_PORT"])), H).serve_forever()
"#;

const DOTENV_SECRET: &str = "hunter2-from-dotenv";
const ENV_SECRET: &str = "sk-live-from-predictor-env";

/// A project whose api `name` runs [`SPY`] with a secret in `.env` and one in `predictor.env`.
fn secret_project(s: &Server, name: &str) -> PathBuf {
    let dir = s.project(name);
    write(&dir, "spy.py", SPY);
    write(&dir, ".env", &format!("DB_PASSWORD={DOTENV_SECRET}\n"));
    write(
        &dir,
        "cortex.yaml",
        &format!(
            "- name: {name}\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 spy.py\n    env:\n      API_KEY: {ENV_SECRET}\n      MODE: prod\n"
        ),
    );
    dir
}

/// `cortex deploy` of `dir` as the holder of `token`; waits until `name` is live; its model id.
fn deploy_dir(s: &Server, token: &str, dir: &Path, name: &str) -> String {
    cortex_as(s, token, dir, &["deploy", "-y"]);
    s.wait_status(name, "live")["model_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `GET /api/v2/apis[/name]` with `token`.
fn get_apis(s: &Server, token: &str, name: Option<&str>) -> Value {
    let url = match name {
        Some(n) => format!("{}/api/v2/apis/{n}", s.url),
        None => format!("{}/api/v2/apis", s.url),
    };
    let (code, v) = curl("GET", &url, Some(token), None);
    assert_eq!(code, 200, "{v}");
    v
}

#[test]
fn readers_see_the_keys_of_predictor_env_but_only_owners_see_the_values() {
    let s = Server::start();
    let olive = user(&s, "olive");
    let sam = user(&s, "sam");
    let dir = secret_project(&s, "vault");
    deploy_dir(&s, &olive, &dir, "vault");
    cortex_as(
        &s,
        &olive,
        s.dir.path(),
        &["access", "vault", "--access", "public"],
    );

    let redacted = json!({"API_KEY": "<redacted>", "MODE": "<redacted>"});
    let shown = json!({"API_KEY": ENV_SECRET, "MODE": "prod"});
    assert_eq!(
        get_apis(&s, &sam, Some("vault"))["spec"]["predictor"]["env"],
        redacted
    );
    let listed = get_apis(&s, &sam, None);
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "vault")
        .unwrap();
    assert_eq!(entry["spec"]["predictor"]["env"], redacted);
    for args in [
        &["get", "vault", "-o", "json"][..],
        &["get", "vault", "-o", "yaml"],
        &["get", "vault"],
        &["get"],
    ] {
        let out = cortex_as(&s, &sam, s.dir.path(), args);
        assert!(
            !out.contains(ENV_SECRET),
            "cortex {args:?} as a reader: {out}"
        );
    }
    let out = cortex_as(&s, &sam, s.dir.path(), &["get", "vault", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["spec"]["predictor"]["env"], redacted);

    // Its owner and an admin see the values.
    assert_eq!(
        get_apis(&s, &olive, Some("vault"))["spec"]["predictor"]["env"],
        shown
    );
    assert_eq!(
        get_apis(&s, &s.token, Some("vault"))["spec"]["predictor"]["env"],
        shown
    );
    let out = cortex_as(&s, &olive, s.dir.path(), &["get", "vault", "-o", "json"]);
    assert!(out.contains(ENV_SECRET), "{out}");
}

/// What `api`'s replica sees, asked by the holder of `token`.
fn spy_on(s: &Server, api: &str, token: &str) -> Value {
    wait_for(&format!("{api} to answer"), DEADLINE, || {
        let resp = http()
            .post(format!("{}/{api}", s.url))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .ok()?;
        (resp.status() == 200).then(|| resp.json::<Value>().unwrap())
    })
}

/// A `.tar.gz` of `files` (name, text), made with `tar` as any user could.
fn tarball(s: &Server, name: &str, files: &[(&str, &str)]) -> Vec<u8> {
    let dir = s.project(name);
    for (file, text) in files {
        write(&dir, file, text);
    }
    let archive = s.dir.path().join(format!("{name}.tar.gz"));
    let mut cmd = std::process::Command::new("tar");
    cmd.arg("czf").arg(&archive).arg("-C").arg(&dir);
    cmd.args(files.iter().map(|(f, _)| *f));
    assert!(cmd.status().unwrap().success());
    std::fs::read(archive).unwrap()
}

#[test]
fn a_reader_who_saves_overlays_a_spy_and_deploys_gets_none_of_the_owners_secrets() {
    let mut s = Server::start();
    let olive = user(&s, "olive");
    let sam = user(&s, "sam");
    let dir = secret_project(&s, "vault");
    let base = deploy_dir(&s, &olive, &dir, "vault");
    cortex_as(
        &s,
        &olive,
        s.dir.path(),
        &["access", "vault", "--access", "public"],
    );
    // The owner's replicas get both secrets.
    let owners = spy_on(&s, "vault", &olive);
    assert_eq!(owners["environ"]["API_KEY"], ENV_SECRET, "{owners}");
    assert_eq!(owners["environ"]["DB_PASSWORD"], DOTENV_SECRET, "{owners}");

    // The reader saves a copy, puts a spy of their own over its files, completes and deploys it.
    let (code, v) = curl(
        "POST",
        &deploy_url(&s, &base, "/save"),
        Some(&sam),
        Some(r#"{"model_name": "sams-copy"}"#),
    );
    assert_eq!(code, 200, "{v}");
    let copy = v["model_id"].as_str().unwrap().to_string();
    let update = v["update_token"].as_str().unwrap().to_string();
    let spy = SPY.replace("MARK = \"base\"", "MARK = \"sams\"");
    let overlay = tarball(&s, "sams-files", &[("spy.py", &spy)]);
    let resp = http()
        .put(deploy_url(&s, &copy, "/files"))
        .bearer_auth(&update)
        .body(overlay.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().unwrap());
    let done = format!("{}/api/v2/deploy/update-status", s.url);
    let (code, v) = curl(
        "POST",
        &done,
        Some(&update),
        Some(r#"{"status": "complete"}"#),
    );
    assert_eq!(code, 200, "{v}");
    let (code, v) = curl("POST", &deploy_url(&s, &copy, ""), Some(&sam), None);
    assert_eq!(code, 200, "{v}");

    let seen = spy_on(&s, "sams-copy", &sam);
    assert_eq!(seen["mark"], "sams", "the reader's own spy runs: {seen}");
    let text = seen.to_string();
    assert!(
        !text.contains(DOTENV_SECRET),
        "the base's .env leaked: {seen}"
    );
    assert!(
        !text.contains(ENV_SECRET),
        "the base's predictor.env leaked: {seen}"
    );
    assert_eq!(
        seen["dotenv"],
        Value::Null,
        "the copy's project has no .env"
    );
    // The base keeps its secrets.
    let owners = spy_on(&s, "vault", &olive);
    assert_eq!(owners["environ"]["DB_PASSWORD"], DOTENV_SECRET, "{owners}");

    // The files the reader sent are theirs to deploy; deployed over the copy they still run
    // without the base's secrets, and the deploy says so.
    let files_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&overlay))
    };
    assert_eq!(head_bundle(&s, &sam, &files_sha), 200);
    let (code, v) = deploy_bundle(&s, &sam, "sams-copy", &files_sha);
    assert_eq!((code, &v[0]["action"]), (200, &json!("updated")), "{v}");
    let message = v[0]["message"].as_str().unwrap();
    assert!(
        message.contains("without .env and predictor.env"),
        "{message}"
    );
    let first = seen["environ"]["CORTEX_JOB_TOKEN"].clone();
    let seen = wait_for("the redeployed copy to answer", DEADLINE, || {
        let seen = spy_on(&s, "sams-copy", &sam);
        (seen["environ"]["CORTEX_JOB_TOKEN"] != first).then_some(seen)
    });
    assert!(!seen.to_string().contains(DOTENV_SECRET), "{seen}");

    // And so it stays when the server starts both again.
    s.restart();
    let seen = spy_on(&s, "sams-copy", &sam);
    assert_eq!(seen["mark"], "sams", "{seen}");
    assert!(!seen.to_string().contains(DOTENV_SECRET), "{seen}");
    assert!(!seen.to_string().contains(ENV_SECRET), "{seen}");
    let owners = spy_on(&s, "vault", &olive);
    assert_eq!(owners["environ"]["API_KEY"], ENV_SECRET, "{owners}");
}

/// A reader's saved files that hard-link the base's `.env` under another name: the copy is
/// unpacked without `.env`, so the link is refused (it carried the secret over, since the
/// `.env` it named was removed only after the link was made).
#[test]
fn a_hard_link_to_the_bases_dotenv_in_a_readers_saved_files_is_refused() {
    let s = Server::start();
    let olive = user(&s, "olive");
    let sam = user(&s, "sam");
    let dir = secret_project(&s, "vault");
    let base = deploy_dir(&s, &olive, &dir, "vault");
    let (copy, update) = saved_by_reader(&s, &olive, &sam, &base);
    // spy.py reads `leak`, a hard link to the `.env` of the layer below.
    let spy = SPY.replace("\".env\"", "\"leak\"");
    let mut files = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(spy.len() as u64);
    header.set_mode(0o644);
    files
        .append_data(&mut header, "spy.py", spy.as_bytes())
        .unwrap();
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Link);
    link.set_size(0);
    files.append_link(&mut link, "leak", ".env").unwrap();
    let overlay = files.into_inner().unwrap().finish().unwrap();
    let resp = http()
        .put(deploy_url(&s, &copy, "/files"))
        .bearer_auth(&update)
        .body(overlay)
        .send()
        .unwrap();
    let uploaded = resp.status().as_u16();
    let done = format!("{}/api/v2/deploy/update-status", s.url);
    curl(
        "POST",
        &done,
        Some(&update),
        Some(r#"{"status": "complete"}"#),
    );
    let (code, v) = curl("POST", &deploy_url(&s, &copy, ""), Some(&sam), None);
    assert_eq!((uploaded, code), (200, 422), "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("\"leak\" is a hard link to .env"),
        "{v}"
    );
    // Nothing of the copy answers with the secret, and the base keeps it.
    let resp = http()
        .post(format!("{}/sams-copy", s.url))
        .bearer_auth(&sam)
        .body("{}")
        .send()
        .unwrap();
    assert!(
        !resp.text().unwrap().contains(DOTENV_SECRET),
        "the base's .env leaked"
    );
    let owners = spy_on(&s, "vault", &olive);
    assert_eq!(owners["environ"]["DB_PASSWORD"], DOTENV_SECRET, "{owners}");
}

/// `olive` makes `vault` (model `base`) public and `sam` saves a copy of it, `sams-copy`: its
/// model id and update token.
fn saved_by_reader(s: &Server, olive: &str, sam: &str, base: &str) -> (String, String) {
    cortex_as(
        s,
        olive,
        s.dir.path(),
        &["access", "vault", "--access", "public"],
    );
    let (code, v) = curl(
        "POST",
        &deploy_url(s, base, "/save"),
        Some(sam),
        Some(r#"{"model_name": "sams-copy"}"#),
    );
    assert_eq!(code, 200, "{v}");
    let copy = v["model_id"].as_str().unwrap().to_string();
    (copy, v["update_token"].as_str().unwrap().to_string())
}

/// The SHA-256 of the one bundle the server stores.
fn the_stored_bundle(s: &Server) -> (String, Vec<u8>) {
    let bundles: Vec<PathBuf> = std::fs::read_dir(s.data_dir().join("bundles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .collect();
    assert_eq!(bundles.len(), 1, "{bundles:?}");
    let name = bundles[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let sha = name.trim_end_matches(".tar.gz").to_string();
    (sha, std::fs::read(&bundles[0]).unwrap())
}

fn head_bundle(s: &Server, token: &str, sha: &str) -> u16 {
    http()
        .head(format!("{}/api/v2/bundles/{sha}", s.url))
        .bearer_auth(token)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// `POST /api/v2/apis` of an api `name` that runs `bundle`, as the holder of `token`.
fn deploy_bundle(s: &Server, token: &str, name: &str, bundle: &str) -> (u16, Value) {
    let config = format!(
        "- name: {name}\n  kind: RealtimeAPI\n  predictor:\n    type: command\n    command: python3 spy.py\n"
    );
    let body = json!({"config_file": "cortex.yaml", "config": config, "bundle": bundle});
    curl(
        "POST",
        &format!("{}/api/v2/apis", s.url),
        Some(token),
        Some(&body.to_string()),
    )
}

#[test]
fn a_bundle_serves_only_who_uploaded_it_and_another_users_looks_absent() {
    let s = Server::start();
    let olive = user(&s, "olive");
    let sam = user(&s, "sam");
    let tara = user(&s, "tara");
    let mia = user(&s, "mia");
    s.ok(s.dir.path(), &["teams", "create", "t"]);
    for (who, flags) in [("olive", &[][..]), ("tara", &["--admin"]), ("mia", &[])] {
        let mut args = vec!["teams", "add", "t", who];
        args.extend_from_slice(flags);
        s.ok(s.dir.path(), &args);
    }
    let dir = secret_project(&s, "vault");
    let base = deploy_dir(&s, &olive, &dir, "vault");
    cortex_as(
        &s,
        &olive,
        s.dir.path(),
        &[
            "access",
            "vault",
            "--access",
            "protected",
            "--team",
            "t",
            "--permission",
            "write",
        ],
    );
    let (sha, bytes) = the_stored_bundle(&s);
    let guessed = "0".repeat(64);

    // Another user's bundle answers exactly as one nobody uploaded.
    assert_eq!(head_bundle(&s, &sam, &sha), 404);
    assert_eq!(head_bundle(&s, &sam, &guessed), 404);
    let (code, stolen) = deploy_bundle(&s, &sam, "stolen", &sha);
    let (absent_code, absent) = deploy_bundle(&s, &sam, "stolen", &guessed);
    assert_eq!((code, absent_code), (404, 404), "{stolen} {absent}");
    assert_eq!(
        stolen["message"].as_str().unwrap().replace(&sha, "SHA"),
        absent["message"].as_str().unwrap().replace(&guessed, "SHA"),
    );
    // A team member who may submit work (write) does not get the project either; whoever
    // owns the api it runs (its owner, the team's admin) and an admin do.
    assert_eq!(head_bundle(&s, &mia, &sha), 404);
    assert_eq!(deploy_bundle(&s, &mia, "stolen", &sha).0, 404);
    assert_eq!(head_bundle(&s, &olive, &sha), 200);
    assert_eq!(head_bundle(&s, &tara, &sha), 200);
    assert_eq!(head_bundle(&s, &s.token, &sha), 200);

    // A copy saved by a reader does not make its bundle the reader's.
    saved_by_reader(&s, &olive, &sam, &base);
    assert_eq!(head_bundle(&s, &sam, &sha), 404);
    assert_eq!(deploy_bundle(&s, &sam, "stolen", &sha).0, 404);

    // Uploading other bytes under its name is refused; uploading the same bytes (sam has the
    // same project) makes it sam's too.
    let put = |body: Vec<u8>| {
        http()
            .put(format!("{}/api/v2/bundles/{sha}", s.url))
            .bearer_auth(&sam)
            .body(body)
            .send()
            .unwrap()
    };
    let wrong = put(b"not the project".to_vec());
    assert_eq!(wrong.status(), 422);
    assert_eq!(head_bundle(&s, &sam, &sha), 404);
    let right = put(bytes);
    assert_eq!(right.status(), 200);
    assert_eq!(right.json::<Value>().unwrap()["created"], true);
    assert_eq!(head_bundle(&s, &sam, &sha), 200);
    let (code, v) = deploy_bundle(&s, &sam, "sams-own", &sha);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v[0]["action"], "created", "{v}");
    assert_eq!(head_bundle(&s, &mia, &sha), 404, "still not mia's");
}
