//! End to end through the built binary: `migrate`, `keys create|list|revoke|rotate`, and
//! `serve` with a bootstrap key on a free port and a temp database, stopped with SIGTERM.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// A command with a clean environment: no SWITCHBOARD_* or DATABASE_URL from the caller.
fn switchboard(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("SWITCHBOARD_") || key == "DATABASE_URL" || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn run(cmd: &mut Command) -> Output {
    let output = cmd.output().expect("binary runs");
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Waits (bounded) until /healthz answers 200; panics with the server's stderr otherwise.
async fn wait_healthy(client: &reqwest::Client, base: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await
            && response.status().as_u16() == 200
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("server exited early with {status}");
        }
        assert!(Instant::now() < deadline, "server never became healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sigterm_and_wait(child: &mut Child) -> std::process::ExitStatus {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
    // SAFETY: kill(2) with a pid we spawned and still own (not yet waited for).
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(rc, 0, "kill failed");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn migrate_creates_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(switchboard(dir.path())
        .args(["migrate", "--database-url"])
        .arg(format!("sqlite://{}/nested/m.db", dir.path().display())));
    assert!(dir.path().join("nested/m.db").is_file());
    // Idempotent.
    run(switchboard(dir.path()).arg("migrate").env(
        "DATABASE_URL",
        format!("sqlite://{}/nested/m.db", dir.path().display()),
    ));
}

#[tokio::test]
async fn serve_with_bootstrap_key_then_sigterm_and_keys_create() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db_url = format!("sqlite://{}/data/e2e.db", dir.path().display());

    // `keys create` before the server exists: creates the database, the org and a key.
    let output = run(switchboard(dir.path())
        .args(["keys", "create", "--org", "acme", "--name", "e2e"])
        .env("DATABASE_URL", &db_url));
    let stdout = String::from_utf8(output.stdout).expect("utf8");
    let created_key = stdout.trim().to_owned();
    assert!(!created_key.is_empty() && !created_key.contains(char::is_whitespace));
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the key on stdout: {stdout}"
    );

    let port = free_port();
    let bootstrap = "sb_bootstrap_e2e_0123456789abcdef";
    let mut child = switchboard(dir.path())
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &db_url)
        .env("SWITCHBOARD_BOOTSTRAP_KEY", bootstrap)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn serve");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_healthy(&client, &base, &mut child).await;

    let response = client
        .post(format!("{base}/api/v1/assistants"))
        .bearer_auth(bootstrap)
        .json(&json!({"name": "E2E"}))
        .send()
        .await
        .expect("create");
    assert_eq!(response.status().as_u16(), 201);
    let created: Value = response.json().await.expect("json");
    assert_eq!(created["name"], "E2E");

    // The key printed by `keys create` works, and sees only its own organisation.
    let response = client
        .get(format!("{base}/api/v1/assistants"))
        .bearer_auth(&created_key)
        .send()
        .await
        .expect("list");
    assert_eq!(response.status().as_u16(), 200);
    let list: Value = response.json().await.expect("json");
    assert_eq!(list, json!([]));

    let response = client
        .get(format!("{base}/api/v1/assistants"))
        .bearer_auth("sb_wrong")
        .send()
        .await
        .expect("list");
    assert_eq!(response.status().as_u16(), 401);

    let status = sigterm_and_wait(&mut child);
    assert!(status.success(), "unclean exit: {status:?}");
}

/// Runs a command expected to fail; returns its stderr.
fn run_failing(cmd: &mut Command) -> String {
    let output = cmd.output().expect("binary runs");
    assert!(
        !output.status.success(),
        "unexpected success\nstdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stderr).expect("utf8")
}

/// `keys list` rows as (id, prefix, name, revoked?), header checked; CLI keys are admins.
fn listed(stdout: &[u8]) -> Vec<(i64, String, String, bool)> {
    let text = String::from_utf8(stdout.to_vec()).expect("utf8");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID",
            "PREFIX",
            "NAME",
            "ROLE",
            "CREATED",
            "LAST_USED",
            "REVOKED"
        ]
    );
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cells.len(), 7, "{line}");
            assert_eq!(cells[3], "admin", "{line}");
            (
                cells[0].parse().expect("id"),
                cells[1].to_owned(),
                cells[2].to_owned(),
                cells[6] != "-",
            )
        })
        .collect()
}

#[tokio::test]
async fn keys_list_revoke_and_rotate_through_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db_url = format!("sqlite://{}/data/keys.db", dir.path().display());
    let keys = |args: &[&str]| {
        let mut cmd = switchboard(dir.path());
        cmd.arg("keys").args(args).env("DATABASE_URL", &db_url);
        cmd
    };
    let first =
        String::from_utf8(run(&mut keys(&["create", "--org", "acme", "--name", "ci"])).stdout)
            .expect("utf8")
            .trim()
            .to_owned();
    let second = String::from_utf8(run(&mut keys(&["create", "--org", "acme"])).stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    run(&mut keys(&["create", "--org", "other", "--name", "theirs"]));

    // Listed with prefix and name, never the key.
    let output = run(&mut keys(&["list", "--org", "acme"]));
    assert!(!String::from_utf8_lossy(&output.stdout).contains(&first));
    let rows = listed(&output.stdout);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (ci_id, ci_prefix, ci_name, ci_revoked) = rows[0].clone();
    assert_eq!(ci_prefix, first[..8]);
    assert_eq!((ci_name.as_str(), ci_revoked), ("ci", false));
    assert_eq!(rows[1].1, second[..8]);
    assert_eq!(rows[1].2, "-");
    let second_id = rows[1].0;
    let other_rows = listed(&run(&mut keys(&["list", "--org", "other"])).stdout);
    assert_eq!(other_rows.len(), 1);
    let other_id = other_rows[0].0;

    // Another organisation's key, an unknown organisation, a non-numeric id: refused.
    let err = run_failing(&mut keys(&[
        "revoke",
        "--org",
        "acme",
        &other_id.to_string(),
    ]));
    assert!(err.contains("no active API key"), "{err}");
    let err = run_failing(&mut keys(&["list", "--org", "nobody"]));
    assert!(err.contains("no organisation named"), "{err}");
    run_failing(&mut keys(&["revoke", "--org", "acme", "one"]));

    // Rotate: a new key alone on stdout, same name; the old one is revoked.
    let output = run(&mut keys(&["rotate", "--org", "acme", &ci_id.to_string()]));
    let stdout = String::from_utf8(output.stdout).expect("utf8");
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the key on stdout: {stdout}"
    );
    let rotated = stdout.trim().to_owned();
    assert!(rotated.starts_with("sb_") && rotated != first);
    // Revoke the unnamed key.
    run(&mut keys(&[
        "revoke",
        "--org",
        "acme",
        &second_id.to_string(),
    ]));
    let err = run_failing(&mut keys(&[
        "revoke",
        "--org",
        "acme",
        &second_id.to_string(),
    ]));
    assert!(err.contains("no active API key"), "already revoked: {err}");
    let err = run_failing(&mut keys(&["rotate", "--org", "acme", &ci_id.to_string()]));
    assert!(err.contains("no active API key"), "already rotated: {err}");

    let rows = listed(&run(&mut keys(&["list", "--org", "acme"])).stdout);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows[0].3 && rows[1].3,
        "old and revoked keys marked: {rows:?}"
    );
    assert_eq!(rows[2].1, rotated[..8]);
    assert_eq!((rows[2].2.as_str(), rows[2].3), ("ci", false));
    assert!(!listed(&run(&mut keys(&["list", "--org", "other"])).stdout)[0].3);

    // Against a running server: the rotated key works, the others fail at once.
    let port = free_port();
    let mut child = switchboard(dir.path())
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &db_url)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn serve");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_healthy(&client, &base, &mut child).await;
    let status = |key: String| {
        let client = client.clone();
        let url = format!("{base}/api/v1/assistants");
        async move {
            client
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(rotated.clone()).await, 200);
    assert_eq!(status(first.clone()).await, 401);
    assert_eq!(status(second.clone()).await, 401);
    // Revoking while the server runs takes effect on the next request.
    let rows = listed(&run(&mut keys(&["list", "--org", "acme"])).stdout);
    run(&mut keys(&[
        "revoke",
        "--org",
        "acme",
        &rows[2].0.to_string(),
    ]));
    assert_eq!(status(rotated).await, 401);
    let rows = listed(&run(&mut keys(&["list", "--org", "acme"])).stdout);
    assert!(rows.iter().all(|r| r.3), "{rows:?}");

    let status = sigterm_and_wait(&mut child);
    assert!(status.success(), "unclean exit: {status:?}");
}

/// Starts `serve` on a free port with `key` as SWITCHBOARD_SECRET_KEY; returns it and its base.
async fn serve_with_key(dir: &Path, db_url: &str, key: &str, bootstrap: &str) -> (Child, String) {
    let port = free_port();
    let mut child = switchboard(dir)
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", db_url)
        .env("SWITCHBOARD_BOOTSTRAP_KEY", bootstrap)
        .env("SWITCHBOARD_SECRET_KEY", key)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn serve");
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&reqwest::Client::new(), &base, &mut child).await;
    (child, base)
}

#[tokio::test]
async fn secrets_rotate_moves_stored_secrets_to_the_new_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db_url = format!("sqlite://{}/data/rotate.db", dir.path().display());
    let (k1, k2, k3) = ("11".repeat(32), "22".repeat(32), "33".repeat(32));
    let bootstrap = "sb_bootstrap_rotate_0123456789";
    let client = reqwest::Client::new();

    let (mut child, base) = serve_with_key(dir.path(), &db_url, &k1, bootstrap).await;
    let created: Value = client
        .post(format!("{base}/api/v1/assistants"))
        .bearer_auth(bootstrap)
        .json(&json!({"name": "rotate", "api_keys": {"deepgram_api_key": "dg-rotate-0123456789"}}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_i64().expect("id");
    assert!(sigterm_and_wait(&mut child).success());

    // Without the old key, rotation cannot read the values: a clear error, not a panic.
    let output = switchboard(dir.path())
        .args(["secrets", "rotate"])
        .env("DATABASE_URL", &db_url)
        .env("SWITCHBOARD_SECRET_KEY", &k3)
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SWITCHBOARD_SECRET_KEY_OLD"), "{stderr}");
    assert!(!stderr.contains("dg-rotate-0123456789") && !stderr.contains(&k1));

    let output = run(switchboard(dir.path())
        .args(["secrets", "rotate"])
        .env("DATABASE_URL", &db_url)
        .env("SWITCHBOARD_SECRET_KEY", &k2)
        .env("SWITCHBOARD_SECRET_KEY_OLD", &k1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 secret value(s) re-encrypted"),
        "{stderr}"
    );

    // The new key alone now reads everything.
    let (mut child, base) = serve_with_key(dir.path(), &db_url, &k2, bootstrap).await;
    let read = client
        .get(format!("{base}/api/v1/assistants/{id}"))
        .bearer_auth(bootstrap)
        .send()
        .await
        .expect("read");
    assert_eq!(read.status().as_u16(), 200);
    let read: Value = read.json().await.expect("json");
    assert_eq!(read["api_keys"]["deepgram_api_key"], "dg-…6789");
    assert!(sigterm_and_wait(&mut child).success());

    // A malformed key stops the command before it touches anything.
    let output = switchboard(dir.path())
        .args(["secrets", "rotate"])
        .env("DATABASE_URL", &db_url)
        .env("SWITCHBOARD_SECRET_KEY", "not-a-key")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("must be 32 bytes"), "{stderr}");
}
