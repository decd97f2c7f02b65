//! Who may do what: users, teams, tokens and model access, as one table of every deploy route
//! against every kind of caller, and predictions on a server beyond loopback.

use serde_json::Value;

use crate::bazaar::{curl, deploy_url, Worker};
use crate::harness::*;

/// `cortex <args>` with `token`, asserting success; stdout.
pub fn cortex_as(s: &Server, token: &str, cwd: &std::path::Path, args: &[&str]) -> String {
    let out = s
        .cortex()
        .env("CORTEX_TOKEN", token)
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cortex {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Waits until `token` is refused (401) on `GET url`: expired or revoked.
fn wait_refused(what: &str, url: &str, token: &str) {
    wait_for(what, DEADLINE, || {
        let (code, _) = curl("GET", url, Some(token), None);
        (code == 401).then_some(())
    });
}

/// Creates a user and returns their first token.
pub fn user(s: &Server, name: &str) -> String {
    let out = s.ok(s.dir.path(), &["users", "create", name, "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["token"].as_str().unwrap().to_string()
}

/// A new token of the caller's (`-o json`), with extra `cortex tokens create` flags.
fn token(s: &Server, as_token: &str, flags: &[&str]) -> Value {
    let mut args = vec!["tokens", "create", "-o", "json"];
    args.extend_from_slice(flags);
    serde_json::from_str(&cortex_as(s, as_token, s.dir.path(), &args)).unwrap()
}

/// `cortex deploy` of a worker as the user holding `token`; waits until live; the model id.
pub fn deploy_as(s: &Server, token: &str, w: &Worker) -> String {
    cortex_as(s, token, &w.dir, &["deploy", "-y"]);
    s.wait_status(&w.name, "live")["model_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Deploy,
    Status,
    Logs,
    StatusInternal,
    StatusInternalOf,
    UpdateStatus,
    LogGet,
    LogPost,
    Save,
    Files,
    TrainStatus,
    TrainUpdateStatus,
    Permissions,
    Undeploy,
}

const ROUTES: [Route; 14] = [
    Route::Deploy,
    Route::Status,
    Route::Logs,
    Route::StatusInternal,
    Route::StatusInternalOf,
    Route::UpdateStatus,
    Route::LogGet,
    Route::LogPost,
    Route::Save,
    Route::Files,
    Route::TrainStatus,
    Route::TrainUpdateStatus,
    Route::Permissions,
    // Last: it stops the model (an allowed caller deploys it again right after).
    Route::Undeploy,
];

/// The deploy parameters the models of the matrix run with.
const PARAMS: &str = r#"{"memory": 300}"#;

fn call(s: &Server, route: Route, model: &str, token: Option<&str>) -> u16 {
    static SAVES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let base = format!("{}/api/v2/deploy", s.url);
    let log = Some(r#"{"level": "warning", "message": "from the matrix"}"#);
    match route {
        // The parameters the model already has: a no-op for those allowed.
        Route::Deploy => curl("POST", &deploy_url(s, model, ""), token, Some(PARAMS)).0,
        Route::Undeploy => curl("DELETE", &deploy_url(s, model, ""), token, None).0,
        Route::Status => curl("GET", &deploy_url(s, model, "/status"), token, None).0,
        Route::Logs => curl("GET", &deploy_url(s, model, "/logs"), token, None).0,
        Route::StatusInternal => curl("GET", &format!("{base}/status-internal"), token, None).0,
        Route::StatusInternalOf => {
            curl(
                "GET",
                &deploy_url(s, model, "/status-internal"),
                token,
                None,
            )
            .0
        }
        Route::UpdateStatus => {
            let body = Some(r#"{"status": "in_progress"}"#);
            curl("POST", &format!("{base}/update-status"), token, body).0
        }
        Route::LogGet => curl("GET", &format!("{base}/log"), token, log).0,
        Route::LogPost => curl("POST", &format!("{base}/log"), token, log).0,
        Route::Save => {
            let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let body = format!(r#"{{"model_name": "saved-{n}"}}"#);
            curl("POST", &deploy_url(s, model, "/save"), token, Some(&body)).0
        }
        Route::Files => curl("PUT", &deploy_url(s, model, "/files"), token, Some("x")).0,
        Route::TrainStatus => {
            let url = format!("{}/api/v2/train/{model}/status", s.url);
            curl("GET", &url, token, None).0
        }
        Route::TrainUpdateStatus => {
            let url = format!("{}/api/v2/train/update-status", s.url);
            curl("POST", &url, token, Some(r#"{"status": "in_progress"}"#)).0
        }
        Route::Permissions => {
            let url = format!("{}/api/v2/model/{model}/permissions", s.url);
            curl("GET", &url, token, None).0
        }
    }
}

#[test]
fn every_deploy_route_answers_every_kind_of_caller_as_the_permission_rules_say() {
    // A retired deployment's token reads its status for a second after its replicas stopped.
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_JOB_TOKEN_GRACE_SECS", "1")]);
    let admin = s.token.clone();
    // olive owns the models; tara is an admin of team t, mia a member; sam is a stranger.
    let olive = user(&s, "olive");
    let tara = user(&s, "tara");
    let mia = user(&s, "mia");
    let sam = user(&s, "sam");
    s.ok(s.dir.path(), &["teams", "create", "t"]);
    s.ok(s.dir.path(), &["teams", "add", "t", "olive"]);
    s.ok(s.dir.path(), &["teams", "add", "t", "tara", "--admin"]);
    s.ok(s.dir.path(), &["teams", "add", "t", "mia"]);

    let read_model = Worker::new(&s, "shared-read");
    let write_model = Worker::new(&s, "shared-write");
    let other = Worker::new(&s, "elsewhere");
    let m = deploy_as(&s, &olive, &read_model);
    let mw = deploy_as(&s, &olive, &write_model);
    deploy_as(&s, &olive, &other);
    let out = cortex_as(
        &s,
        &olive,
        s.dir.path(),
        &[
            "access",
            "shared-read",
            "--access",
            "protected",
            "--team",
            "t",
            "--permission",
            "read",
        ],
    );
    assert!(
        out.contains("shared-read: protected (team t), default permission read; owner olive"),
        "{out}"
    );
    cortex_as(
        &s,
        &olive,
        s.dir.path(),
        &[
            "access",
            "shared-write",
            "--access",
            "protected",
            "--team",
            "t",
            "--permission",
            "write",
        ],
    );

    // A job token of an earlier deployment: revoked once the new version took over.
    let revoked_job = read_model.job_token(None);
    let (code, _) = curl("POST", &deploy_url(&s, &m, ""), Some(&olive), Some(PARAMS));
    assert_eq!(code, 200);
    let (code, _) = curl("POST", &deploy_url(&s, &mw, ""), Some(&olive), Some(PARAMS));
    assert_eq!(code, 200);
    let job = read_model.job_token(Some(&revoked_job));
    wait_refused(
        "the old deployment's token to be revoked",
        &format!("{}/api/v2/deploy/status-internal", s.url),
        &revoked_job,
    );
    let other_job = other.job_token(None);

    // A token that expires in a second, and one that is revoked.
    let expiring = token(&s, &sam, &["--expires-in", "1s"])["token"]
        .as_str()
        .unwrap()
        .to_string();
    wait_refused(
        "the token to expire",
        &format!("{}/api/v2/info", s.url),
        &expiring,
    );
    let revoked = token(&s, &sam, &["--name", "gone"]);
    cortex_as(
        &s,
        &sam,
        s.dir.path(),
        &["tokens", "revoke", revoked["id"].as_str().unwrap()],
    );
    let revoked = revoked["token"].as_str().unwrap().to_string();
    // The update token of a model being saved from this one.
    let (code, saved) = curl(
        "POST",
        &deploy_url(&s, &m, "/save"),
        Some(&olive),
        Some(r#"{"model_name": "being-saved"}"#),
    );
    assert_eq!(code, 200, "{saved}");
    let update = saved["update_token"].as_str().unwrap().to_string();

    use Route::*;
    // Expected status per route, in ROUTES order: deploy, status, logs, status-internal,
    // status-internal of the model, update-status, log (GET), log (POST), save, files,
    // train status, train update-status, permissions, undeploy. A token without a model in
    // the path acts on its own model. Any valid user token may ask its permissions (a
    // caller without access hears `false`, as upstream answers).
    let user_routes = |deploy: u16, read: u16| {
        [
            deploy, read, read, 401, 401, 401, 401, 401, read, 401, read, 401, 200, deploy,
        ]
    };
    let unauthorized = [401; 14];
    let job_of_this = [
        401, 401, 401, 200, 200, 200, 200, 200, 200, 403, 401, 403, 401, 401,
    ];
    let job_of_other = [
        401, 401, 401, 200, 403, 200, 200, 200, 403, 403, 401, 403, 401, 401,
    ];
    let update_token = [
        401, 401, 401, 200, 403, 200, 403, 403, 401, 403, 401, 200, 401, 401,
    ];
    let rows: Vec<(&str, Option<&str>, &str, [u16; 14])> = vec![
        ("anonymous", None, &m, unauthorized),
        ("malformed token", Some("not a token"), &m, unauthorized),
        ("expired token", Some(&expiring), &m, unauthorized),
        ("revoked token", Some(&revoked), &m, unauthorized),
        ("user without access", Some(&sam), &m, user_routes(403, 403)),
        (
            "reader (team member, read)",
            Some(&mia),
            &m,
            user_routes(403, 200),
        ),
        (
            "writer (team member, write)",
            Some(&mia),
            &mw,
            user_routes(403, 200),
        ),
        ("team admin", Some(&tara), &m, user_routes(200, 200)),
        ("owner", Some(&olive), &m, user_routes(200, 200)),
        ("global admin", Some(&admin), &m, user_routes(200, 200)),
        ("job token of this model", Some(&job), &m, job_of_this),
        (
            "job token of another model",
            Some(&other_job),
            &m,
            job_of_other,
        ),
        (
            "revoked job token of this model",
            Some(&revoked_job),
            &m,
            unauthorized,
        ),
        (
            "update token of a model saved from it",
            Some(&update),
            &m,
            update_token,
        ),
    ];
    let mut failures = Vec::new();
    for (i, route) in ROUTES.iter().enumerate() {
        for (who, token, model, expected) in &rows {
            let got = call(&s, *route, model, *token);
            if got != expected[i] {
                failures.push(format!(
                    "{route:?} by {who}: {got}, expected {}",
                    expected[i]
                ));
            }
            if *route == Undeploy && got == 200 {
                // Put it back for the next caller (job tokens are not used any more).
                assert_eq!(call(&s, Deploy, model, Some(&admin)), 200);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn beyond_loopback_predictions_need_read_access_unless_the_api_is_public() {
    let s = Server::start_on("0.0.0.0:0");
    let olive = user(&s, "olive");
    let sam = user(&s, "sam");
    let w = Worker::new(&s, "guarded");
    deploy_as(&s, &olive, &w);
    let predict = |token: Option<&str>| {
        let mut req = http()
            .post(format!("{}/guarded", s.url))
            .header("content-type", "application/json")
            .body("{}");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().unwrap().status().as_u16()
    };
    assert_eq!(predict(None), 401);
    assert_eq!(predict(Some(&sam)), 403);
    assert_eq!(predict(Some(&olive)), 200);
    assert_eq!(predict(Some(&s.token)), 200, "a global admin");

    // A token scoped to this api works for it and nowhere else.
    let scoped = token(&s, &olive, &["--api", "guarded"])["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(predict(Some(&scoped)), 200);
    for args in [
        &["get"][..],
        &["access", "guarded", "--access", "public"][..],
    ] {
        let out = s
            .cortex()
            .env("CORTEX_TOKEN", &scoped)
            .args(args)
            .output()
            .unwrap();
        assert_refused(&out, "scoped to one api");
    }

    // Shared with a team, then with everyone.
    s.ok(s.dir.path(), &["teams", "create", "t"]);
    s.ok(s.dir.path(), &["teams", "add", "t", "olive"]);
    s.ok(s.dir.path(), &["teams", "add", "t", "sam"]);
    cortex_as(
        &s,
        &olive,
        s.dir.path(),
        &["access", "guarded", "--access", "protected", "--team", "t"],
    );
    assert_eq!(predict(Some(&sam)), 200);
    assert_eq!(predict(None), 401);
    // A reader sees it and may save it, but the saved model does not carry its secrets.
    let as_sam = |args: &[&str]| {
        s.cortex()
            .env("CORTEX_TOKEN", &sam)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(stdout(&as_sam(&["get"])).contains("guarded"));
    let id = s.api_json("guarded").unwrap()["model_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, v) = curl(
        "POST",
        &deploy_url(&s, &id, "/save"),
        Some(&sam),
        Some(r#"{"model_name": "sams-copy"}"#),
    );
    assert_eq!(code, 200, "{v}");
    let copy: Value =
        serde_json::from_slice(&as_sam(&["get", "sams-copy", "-o", "json"]).stdout).unwrap();
    assert_eq!(
        copy["spec"]["predictor"]["env"],
        serde_json::json!({}),
        "{copy}"
    );
    let mine: Value =
        serde_json::from_slice(&as_sam(&["get", "guarded", "-o", "json"]).stdout).unwrap();
    assert!(
        mine["spec"]["predictor"]["env"]["TOKEN_FILE"].is_string(),
        "{mine}"
    );
    s.ok(s.dir.path(), &["teams", "remove", "t", "sam"]);
    assert_eq!(predict(Some(&sam)), 403, "membership changes apply at once");
    cortex_as(
        &s,
        &olive,
        s.dir.path(),
        &["access", "guarded", "--access", "public"],
    );
    assert_eq!(predict(None), 200);

    // Refusals say what to change.
    let out = s
        .cortex()
        .env("CORTEX_TOKEN", &sam)
        .args(["access", "guarded", "--access", "private"])
        .output()
        .unwrap();
    assert_refused(&out, "only the owner of guarded");
    let out = s
        .cortex()
        .env("CORTEX_TOKEN", &sam)
        .args(["users", "list"])
        .output()
        .unwrap();
    assert_refused(&out, "only an admin may list users");
    // The control API keeps other users' apis to their owners.
    let private = Worker::new(&s, "olives-own");
    deploy_as(&s, &olive, &private);
    let as_sam = |args: &[&str]| {
        s.cortex()
            .env("CORTEX_TOKEN", &sam)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(!stdout(&as_sam(&["get"])).contains("olives-own"));
    assert_refused(
        &as_sam(&["get", "olives-own"]),
        "does not have the permission",
    );
    assert_refused(
        &as_sam(&["logs", "olives-own"]),
        "does not have the permission",
    );
    assert_refused(
        &as_sam(&["delete", "olives-own"]),
        "does not have the permission",
    );
    let out = s
        .cortex()
        .env("CORTEX_TOKEN", &sam)
        .current_dir(&private.dir)
        .args(["deploy", "-y"])
        .output()
        .unwrap();
    assert_refused(&out, "does not have the permission");
    assert!(
        stdout(&as_sam(&["get", "guarded"])).contains("guarded"),
        "public: readable"
    );
    let out = s
        .cortex()
        .args(["access", "guarded", "--access", "protected"])
        .output()
        .unwrap();
    assert_refused(&out, "protected access needs a team");
}

#[test]
fn users_teams_and_tokens_are_managed_from_the_cli() {
    let s = Server::start();
    let ada = user(&s, "ada");
    let list = s.ok(s.dir.path(), &["users", "list"]);
    assert!(list.contains("ada") && list.contains("admin"), "{list}");
    let out = s.run(s.dir.path(), &["users", "create", "ada"]);
    assert_refused(&out, "already exists");

    s.ok(s.dir.path(), &["teams", "create", "research"]);
    let team = s.ok(
        s.dir.path(),
        &["teams", "add", "research", "ada", "--admin"],
    );
    assert!(team.contains("team research: ada (admin)"), "{team}");
    let teams = cortex_as(&s, &ada, s.dir.path(), &["teams", "list"]);
    assert!(
        teams.contains("research") && teams.contains("ada"),
        "{teams}"
    );

    let created = token(&s, &ada, &["--name", "ci", "--expires-in", "1h"]);
    let id = created["id"].as_str().unwrap();
    let tokens = cortex_as(&s, &ada, s.dir.path(), &["tokens", "list"]);
    assert!(tokens.contains(id) && tokens.contains("ci"), "{tokens}");
    assert!(
        tokens.contains("in 59m") || tokens.contains("in 1h"),
        "{tokens}"
    );
    cortex_as(&s, &ada, s.dir.path(), &["tokens", "revoke", id]);
    let (code, _) = curl(
        "GET",
        &format!("{}/api/v2/info", s.url),
        created["token"].as_str(),
        None,
    );
    assert_eq!(code, 401);
    let out = s
        .cortex()
        .env("CORTEX_TOKEN", &ada)
        .args(["tokens", "revoke", id])
        .output()
        .unwrap();
    assert_refused(&out, "no token of yours");

    // ada shares an api with her team; deleting the team makes it private again.
    let w = Worker::new(&s, "adas-api");
    deploy_as(&s, &ada, &w);
    let bob = user(&s, "bob");
    s.ok(s.dir.path(), &["teams", "add", "research", "bob"]);
    cortex_as(
        &s,
        &ada,
        s.dir.path(),
        &[
            "access",
            "adas-api",
            "--access",
            "protected",
            "--team",
            "research",
        ],
    );
    let bob_sees = || {
        stdout(
            &s.cortex()
                .env("CORTEX_TOKEN", &bob)
                .args(["get"])
                .output()
                .unwrap(),
        )
    };
    assert!(bob_sees().contains("adas-api"));
    s.ok(s.dir.path(), &["teams", "delete", "research"]);
    assert!(
        !bob_sees().contains("adas-api"),
        "private once its team is gone"
    );

    let out = s.ok(s.dir.path(), &["users", "delete", "ada"]);
    assert!(
        out.contains("deleted user ada; their apis now belong to admin"),
        "{out}"
    );
    let (code, _) = curl("GET", &format!("{}/api/v2/info", s.url), Some(&ada), None);
    assert_eq!(code, 401, "a deleted user's tokens go with them");
    let access = s.ok(s.dir.path(), &["access", "adas-api"]);
    assert!(
        access.contains("adas-api: private, default permission read; owner admin"),
        "{access}"
    );
}

#[test]
fn an_update_token_expires() {
    let s = Server::start_with("127.0.0.1:0", &[("CORTEX_UPDATE_TOKEN_SECS", "1")]);
    let w = Worker::new(&s, "base");
    let id = w.deploy(&s);
    let (code, v) = curl(
        "POST",
        &deploy_url(&s, &id, "/save"),
        Some(&s.token),
        Some(r#"{"model_name": "too-late"}"#),
    );
    assert_eq!(code, 200, "{v}");
    let update = v["update_token"].as_str().unwrap().to_string();
    // Probed with a route that changes nothing (an update-status would complete the save).
    let probe = format!("{}/api/v2/deploy/status-internal", s.url);
    wait_refused("the update token to expire", &probe, &update);
    let url = format!("{}/api/v2/deploy/update-status", s.url);
    let (code, _) = curl(
        "POST",
        &url,
        Some(&update),
        Some(r#"{"status": "complete"}"#),
    );
    assert_eq!(code, 401);
    let saved = s.api_json("too-late").unwrap();
    let (code, v) = curl(
        "POST",
        &deploy_url(&s, saved["model_id"].as_str().unwrap(), ""),
        Some(&s.token),
        None,
    );
    assert_eq!(code, 422, "still not deployable: {v}");
}

#[test]
fn a_token_expiring_past_any_date_is_refused_not_a_failing_route() {
    // 999999999999h used to be taken, and the Model Bazaar permissions route then answered
    // 500: the expiry could not be written as a date.
    let s = Server::start();
    let out = s.run(
        s.dir.path(),
        &["tokens", "create", "--expires-in", "999999999999h"],
    );
    assert_refused(&out, "--expires-in \"999999999999h\"");
    assert!(
        stderr(&out).contains("is too long; at most 876000h (100 years)"),
        "{}",
        stderr(&out)
    );
    let url = format!("{}/api/v2/tokens", s.url);
    let body = r#"{"name": "far", "expires_in_secs": 3600000000000}"#;
    let (code, v) = curl("POST", &url, Some(&s.token), Some(body));
    assert_eq!(
        (code, v["kind"].as_str()),
        (422, Some("unprocessable")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("is more than 100 years"),
        "{v}"
    );
    // A hundred years is still taken.
    let long = token(&s, &s.token, &["--expires-in", "876000h"]);
    assert!(long["token"].as_str().is_some(), "{long}");
}

#[test]
fn a_token_scoped_to_an_api_its_user_may_not_use_is_refused() {
    let s = Server::start();
    let p = s.python_project(
        "mine",
        "RealtimeAPI",
        "class PythonPredictor:\n    def __init__(self, config):\n        pass\n    def predict(self, payload):\n        return payload\n",
        "",
    );
    s.ok(&p, &["deploy"]);
    let bob = user(&s, "bob");
    let out = s
        .cortex()
        .env("CORTEX_TOKEN", &bob)
        .args(["tokens", "create", "--api", "mine"])
        .output()
        .unwrap();
    assert_refused(&out, "user bob may not use api mine");
    // Nor may an admin make one for him; the admin's own is made.
    let out = s.run(
        s.dir.path(),
        &["tokens", "create", "--api", "mine", "--user", "bob"],
    );
    assert_refused(&out, "user bob may not use api mine");
    let own = token(&s, &s.token, &["--api", "mine"]);
    assert!(own["token"].as_str().is_some(), "{own}");
    // Once bob may read it, his is made.
    s.ok(&p, &["access", "mine", "--access", "public"]);
    let his = token(&s, &bob, &["--api", "mine"]);
    assert!(his["token"].as_str().is_some(), "{his}");
}

#[test]
fn a_token_scoped_to_one_api_says_so_on_its_owners_other_apis() {
    let s = Server::start();
    let echo = "class PythonPredictor:\n    def __init__(self, config):\n        pass\n    def predict(self, payload):\n        return payload\n";
    for name in ["mine", "other"] {
        let p = s.python_project(name, "RealtimeAPI", echo, "");
        s.ok(&p, &["deploy"]);
        s.wait_status(name, "live");
    }
    let scoped = token(&s, &s.token, &["--api", "mine"]);
    let scoped = scoped["token"].as_str().unwrap();
    let other_id = s.api_json("other").unwrap()["model_id"]
        .as_str()
        .unwrap()
        .to_string();
    for (method, url, body) in [
        ("POST", format!("{}/other", s.url), Some("{}")),
        (
            "GET",
            format!("{}/api/v2/deploy/{other_id}/status", s.url),
            None,
        ),
    ] {
        let (code, answer) = curl(method, &url, Some(scoped), body);
        let answer = answer.to_string();
        assert_eq!(code, 403, "{method} {url}: {answer}");
        assert!(
            answer.contains("this token is scoped to another api")
                && answer.contains("not on other"),
            "{method} {url}: {answer}"
        );
    }
    let (code, _) = curl("POST", &format!("{}/mine", s.url), Some(scoped), Some("{}"));
    assert_eq!(code, 200);
}
