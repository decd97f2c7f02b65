//! Bundles are checked at upload: archives that cannot be unpacked safely (too big, too many
//! files, paths or links out of the project, devices) are refused with 422, naming no server
//! path; unpacking keeps only the executable bit; a nearly full disk refuses uploads and
//! deploys (507); a deleted API's bundle and project are removed, and partial unpacks are
//! cleaned at start.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::bazaar::{curl, deploy_url, wait_deploy_status};
use crate::harness::{http, Server};

const CONFIG: &str =
    "- name: bits\n  kind: RealtimeAPI\n  predictor:\n    type: python\n    path: predictor.py\n";
const PREDICTOR: &str = "class PythonPredictor:\n    def __init__(self, config):\n        pass\n\n    def predict(self, payload):\n        return payload\n";

/// A tar.gz built entry by entry (headers written as given: nothing is normalised).
struct Archive(tar::Builder<Vec<u8>>);

impl Archive {
    fn new() -> Archive {
        Archive(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h
    }

    fn file(mut self, name: &str, mode: u32, data: &[u8]) -> Archive {
        let mut h = Archive::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.0.append_data(&mut h, name, data).unwrap();
        self
    }

    /// An entry whose name is written into the header as is (the builder refuses `..`).
    fn raw_name(mut self, name: &str) -> Archive {
        let mut h = Archive::header(tar::EntryType::Regular, 0o644, 1);
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        self.0.append(&h, &b"x"[..]).unwrap();
        self
    }

    fn symlink(mut self, name: &str, target: &str) -> Archive {
        let mut h = Archive::header(tar::EntryType::Symlink, 0o777, 0);
        self.0.append_link(&mut h, name, target).unwrap();
        self
    }

    fn project(self) -> Archive {
        self.file("predictor.py", 0o644, PREDICTOR.as_bytes())
    }

    fn gz(self) -> Vec<u8> {
        let raw = self.0.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        gz.finish().unwrap()
    }
}

/// `PUT /api/v2/bundles/{sha}`: the status and JSON answer, and the bundle's SHA-256.
fn upload(s: &Server, gz: &[u8]) -> (u16, Value, String) {
    let sha = hex::encode(Sha256::digest(gz));
    let resp = http()
        .put(format!("{}/api/v2/bundles/{sha}", s.url))
        .bearer_auth(&s.token)
        .body(gz.to_vec())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null), sha)
}

fn deploy(s: &Server, sha: &str) -> (u16, Value) {
    let resp = http()
        .post(format!("{}/api/v2/apis", s.url))
        .bearer_auth(&s.token)
        .json(&json!({"config_file": "cortex.yaml", "config": CONFIG, "bundle": sha}))
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

/// Asserts a 422 whose message says `needle` and names no path of the server's.
#[track_caller]
fn assert_refused(s: &Server, (status, v, sha): (u16, Value, String), needle: &str) {
    assert_eq!(
        (status, v["kind"].as_str()),
        (422, Some("unprocessable")),
        "{v}"
    );
    let message = v["message"].as_str().unwrap();
    assert!(message.contains(needle), "{needle:?} not in {v}");
    let dir = s.dir.path().display().to_string();
    assert!(!message.contains(&dir), "a server path in {v}");
    assert!(
        !s.data_dir()
            .join("bundles")
            .join(format!("{sha}.tar.gz"))
            .exists(),
        "a refused bundle is not kept"
    );
}

#[test]
fn a_setuid_file_unpacks_with_only_its_executable_bits() {
    let s = Server::start();
    let gz = Archive::new()
        .project()
        .file("tool", 0o4755, b"#!/bin/sh\nid\n")
        .file("shared", 0o666, b"x")
        .gz();
    let (status, v, sha) = upload(&s, &gz);
    assert_eq!(status, 200, "{v}");
    let (status, v) = deploy(&s, &sha);
    assert_eq!(status, 200, "{v}");
    use std::os::unix::fs::PermissionsExt;
    let mode = |name: &str| {
        let p = s.replica_tree().join("projects").join(&sha).join(name);
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    };
    assert_eq!(mode("tool"), 0o755);
    assert_eq!(mode("shared"), 0o644);
}

#[test]
fn archives_that_cannot_be_unpacked_safely_are_refused_at_upload() {
    let s = Server::start_with(
        "127.0.0.1:0",
        &[
            ("CORTEX_MAX_UNPACKED_MB", "8"),
            ("CORTEX_MAX_BUNDLE_FILES", "50"),
        ],
    );
    // 20 MiB of zeros: a few KiB compressed.
    let bomb = Archive::new()
        .project()
        .file("zeros", 0o644, &vec![0u8; 20 << 20])
        .gz();
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    assert_refused(&s, upload(&s, &bomb), "more than 8 MiB");
    let mut many = Archive::new().project();
    for i in 0..60 {
        many = many.file(&format!("f{i}"), 0o644, b"");
    }
    assert_refused(&s, upload(&s, &many.gz()), "more than 50 files");
    let climbs = Archive::new().project().raw_name("../escape").gz();
    assert_refused(&s, upload(&s, &climbs), "\"../escape\"");
    let absolute = Archive::new().project().raw_name("/tmp/abs").gz();
    assert_refused(&s, upload(&s, &absolute), "\"/tmp/abs\"");
    let link = Archive::new().project().symlink("data", "/etc").gz();
    assert_refused(&s, upload(&s, &link), "outside the project");
    let up = Archive::new().project().symlink("a/up", "../../x").gz();
    assert_refused(&s, upload(&s, &up), "outside the project");
    let mut b = Archive::new().project();
    let mut h = Archive::header(tar::EntryType::Block, 0o600, 0);
    b.0.append_data(&mut h, "disk", &[][..]).unwrap();
    assert_refused(&s, upload(&s, &b.gz()), "block device");
    // A link inside the project is fine.
    let fine = Archive::new()
        .project()
        .symlink("alias.py", "predictor.py")
        .gz();
    let (status, v, _) = upload(&s, &fine);
    assert_eq!(status, 200, "{v}");
}

#[test]
fn a_nearly_full_disk_refuses_uploads_and_deploys_with_507() {
    let mut s = Server::start();
    let gz = Archive::new().project().gz();
    let (status, v, sha) = upload(&s, &gz);
    assert_eq!(status, 200, "{v}");
    s.set_env("CORTEX_MIN_FREE_DISK_MB", "999999999999");
    s.restart();
    let other = Archive::new().project().file("more", 0o644, b"x").gz();
    let dir = s.dir.path().display().to_string();
    let (status, v, _) = upload(&s, &other);
    assert_eq!(
        (status, v["kind"].as_str()),
        (507, Some("insufficient_storage")),
        "{v}"
    );
    assert!(!v["message"].as_str().unwrap().contains(&dir), "{v}");
    let (status, v) = deploy(&s, &sha);
    assert_eq!(
        (status, v["kind"].as_str()),
        (507, Some("insufficient_storage")),
        "{v}"
    );
    assert!(!v["message"].as_str().unwrap().contains(&dir), "{v}");
    assert!(s.api_json("bits").is_none(), "nothing was deployed");
}

#[test]
fn a_deleted_apis_bundle_and_project_are_removed_and_partial_unpacks_at_start() {
    let mut s = Server::start();
    let (status, v, sha) = upload(&s, &Archive::new().project().gz());
    assert_eq!(status, 200, "{v}");
    let (status, v) = deploy(&s, &sha);
    assert_eq!(status, 200, "{v}");
    let bundle = s.data_dir().join("bundles").join(format!("{sha}.tar.gz"));
    let project = s.replica_tree().join("projects").join(&sha);
    assert!(bundle.is_file() && project.is_dir());
    s.ok(s.dir.path(), &["delete", "bits"]);
    assert!(!bundle.exists(), "the deleted api's bundle is removed");
    assert!(!project.exists(), "the deleted api's project is removed");
    // It is gone for the server too: uploading it again stores it again.
    let (status, v, _) = upload(&s, &Archive::new().project().gz());
    assert_eq!((status, v["created"].as_bool()), (200, Some(true)), "{v}");

    // A bundle just uploaded, not deployed yet, stays over a restart (its grace period);
    // what an interrupted unpack or upload left does not.
    let partial = s
        .replica_tree()
        .join("projects")
        .join(format!(".{sha}.4242"));
    std::fs::create_dir_all(partial.join("sub")).unwrap();
    let temp = s
        .data_dir()
        .join("bundles")
        .join(format!(".{sha}.tar.gz.1.2.tmp"));
    std::fs::write(&temp, b"half").unwrap();
    s.restart();
    assert!(!partial.exists(), "a partial unpack is removed at start");
    assert!(!temp.exists(), "a partial upload is removed at start");
    assert!(bundle.is_file(), "a bundle in its grace period stays");
    let (status, v) = deploy(&s, &sha);
    assert_eq!(status, 200, "{v}");
}

/// The bundles stored on the server (their SHA-256s).
fn stored_bundles(s: &Server) -> Vec<String> {
    let mut shas: Vec<String> = std::fs::read_dir(s.data_dir().join("bundles"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".tar.gz").map(str::to_string)
        })
        .collect();
    shas.sort();
    shas
}

#[test]
fn a_redeployed_apis_old_bundle_and_project_are_removed_once_nothing_runs_from_them() {
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_SWEEP_SECS", "1")]);
    let p = s.python_project("bits", "RealtimeAPI", PREDICTOR, "");
    s.ok(&p, &["deploy"]);
    s.wait_status("bits", "live");
    let old = stored_bundles(&s);
    assert_eq!(old.len(), 1, "{old:?}");
    crate::harness::write(&p, "extra.txt", "v2");
    s.ok(&p, &["deploy"]);
    s.wait_status("bits", "live");
    let old_project = s.replica_tree().join("projects").join(&old[0]);
    crate::harness::wait_for(
        "the old version's files to go",
        crate::harness::DEADLINE,
        || (!old_project.exists() && stored_bundles(&s).len() == 1).then_some(()),
    );
    let new = stored_bundles(&s);
    assert_ne!(new, old);
    assert!(s.replica_tree().join("projects").join(&new[0]).is_dir());
    assert_eq!(s.predict("bits", "{}").status(), 200);
}

/// What an outsider sent: `m -> .` and `l -> m/..` each name a path inside the project when
/// read as text, but `l` is the project's parent once `m` is followed, and `l/x` is under it.
fn a_link_out_through_a_link() -> Archive {
    Archive::new()
        .project()
        .symlink("m", ".")
        .symlink("l", "m/..")
        .file("l/x", 0o644, b"x")
}

/// Deploys a plain project as `bits` and saves a copy of it (`bits-copy`): the copy's model
/// id and update token.
fn a_saved_copy(s: &Server) -> (String, String) {
    let (status, v, base) = upload(s, &Archive::new().project().gz());
    assert_eq!(status, 200, "{v}");
    let (status, v) = deploy(s, &base);
    assert_eq!(status, 200, "{v}");
    let model = s.api_json("bits").unwrap()["model_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, v) = curl(
        "POST",
        &deploy_url(s, &model, "/save"),
        Some(&s.token),
        Some(r#"{"model_name": "bits-copy"}"#),
    );
    assert_eq!(status, 200, "{v}");
    let id = v["model_id"].as_str().unwrap().to_string();
    (id, v["update_token"].as_str().unwrap().to_string())
}

/// `PUT /api/v2/deploy/{id}/files` with the saved model's update token.
fn put_files(s: &Server, id: &str, update: &str, gz: &[u8]) -> (u16, Value, String) {
    let resp = http()
        .put(deploy_url(s, id, "/files"))
        .bearer_auth(update)
        .body(gz.to_vec())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let sha = hex::encode(Sha256::digest(gz));
    (status, resp.json().unwrap_or(Value::Null), sha)
}

/// Marks a save complete (its update token), then deploys the copy through Model Bazaar.
fn complete_and_deploy(s: &Server, id: &str, update: &str) -> (u16, Value) {
    let update_status = format!("{}/api/v2/deploy/update-status", s.url);
    let (status, v) = curl(
        "POST",
        &update_status,
        Some(update),
        Some(r#"{"status": "complete"}"#),
    );
    assert_eq!(status, 200, "{v}");
    curl("POST", &deploy_url(s, id, ""), Some(&s.token), None)
}

#[test]
fn a_link_out_through_another_link_is_refused_at_upload_by_both_routes() {
    let s = Server::start();
    let gz = a_link_out_through_a_link().gz();
    let refused = upload(&s, &gz);
    let sha = refused.2.clone();
    assert_refused(&s, refused, "\"l\" links to \"m/..\"");
    // Never kept, so a deploy never sees it.
    let (status, v) = deploy(&s, &sha);
    assert_eq!(
        (status, v["kind"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );

    let (copy, update) = a_saved_copy(&s);
    assert_refused(
        &s,
        put_files(&s, &copy, &update, &gz),
        "\"l\" links to \"m/..\"",
    );
    // The same in two uploads: each alone stays inside, the second over the first does not.
    let first = Archive::new().symlink("m", ".").gz();
    let (status, v, _) = put_files(&s, &copy, &update, &first);
    assert_eq!(status, 200, "{v}");
    let second = Archive::new().symlink("l", "m/..").gz();
    assert_refused(
        &s,
        put_files(&s, &copy, &update, &second),
        "\"l\" links to \"m/..\"",
    );
    // The copy deploys with what was kept.
    assert_eq!(complete_and_deploy(&s, &copy, &update), (200, json!({})));
    wait_deploy_status(&s, &copy, "complete");
}

/// Puts `gz` in place of the stored bundle `sha`, as a bundle an older server accepted.
fn replace_stored(s: &Server, sha: &str, gz: &[u8]) {
    let path = s.data_dir().join("bundles").join(format!("{sha}.tar.gz"));
    assert!(path.is_file(), "{}", path.display());
    std::fs::write(path, gz).unwrap();
}

#[test]
fn a_stored_bundle_that_cannot_be_unpacked_safely_is_refused_at_deploy_with_422_naming_it() {
    let s = Server::start();
    // A bundle kept before links were followed at upload.
    let stored = Archive::new().project().file("old", 0o644, b"1").gz();
    let (status, v, sha) = upload(&s, &stored);
    assert_eq!(status, 200, "{v}");
    replace_stored(&s, &sha, &a_link_out_through_a_link().gz());
    let (status, v) = deploy(&s, &sha);
    assert_eq!(
        (status, v["kind"].as_str()),
        (422, Some("unprocessable")),
        "{v}"
    );
    let message = v["message"].as_str().unwrap();
    assert!(message.contains(&sha), "{v}");
    assert!(message.contains("\"l\" links to \"m/..\""), "{v}");

    // A saved model's files: the answer names them, not the base bundle, and the model
    // says why it failed.
    let (copy, update) = a_saved_copy(&s);
    let files = Archive::new().file("weights", 0o644, b"2").gz();
    let (status, v, layer) = put_files(&s, &copy, &update, &files);
    assert_eq!(status, 200, "{v}");
    replace_stored(&s, &layer, &a_link_out_through_a_link().gz());
    let (status, v) = complete_and_deploy(&s, &copy, &update);
    assert_eq!(
        (status, v["kind"].as_str()),
        (422, Some("unprocessable")),
        "{v}"
    );
    let message = v["message"].as_str().unwrap();
    assert!(message.contains(&layer), "{v}");
    assert!(!message.contains("cortex deploy"), "{v}");
    let status = wait_deploy_status(&s, &copy, "failed");
    assert!(
        status["errors"][0].as_str().unwrap().contains(&layer),
        "{status}"
    );
}
