//! The `keyward` binary as operators run it: `serve` in its own process, the
//! CLI against it, signals, crashes and what ends up in logs and on disk.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_keyward");

/// A `keyward serve` process and everything it wrote to stderr.
struct Server {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(data_dir: &Path, extra_env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env_remove("KEYWARD_DATABASE_URL")
            .env_remove("KEYWARD_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            command.env(k, v);
        }
        Self::spawn(command)
    }

    fn spawn(mut command: Command) -> Server {
        let mut child = command.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let found = stderr.lock().unwrap().iter().find_map(|l| {
                l.contains("keyward is serving").then(|| {
                    let rest = &l[l.find("addr=").unwrap() + 5..];
                    rest.split_whitespace().next().unwrap().to_owned()
                })
            });
            if let Some(addr) = found {
                break addr;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("server exited with {status}: {:?}", stderr.lock().unwrap());
            }
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        Server {
            child,
            addr: format!("http://{addr}"),
            stderr,
        }
    }

    /// The root token, if this start printed one.
    fn root_token(&self) -> Option<String> {
        self.stderr.lock().unwrap().iter().find_map(|l| {
            l.contains("root admin token (shown once")
                .then(|| l.rsplit(' ').next().unwrap().to_owned())
        })
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Runs a client command against this server.
    fn cli(&self, token: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(BIN)
            .args(args)
            .env("KEYWARD_ADDR", &self.addr)
            .env("KEYWARD_TOKEN", token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// Runs a client command with no token but `env` (a session file, a
    /// password).
    fn cli_as(&self, env: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("KEYWARD_ADDR", &self.addr)
            .env_remove("KEYWARD_TOKEN")
            .env_remove("KEYWARD_PASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    fn cli_json(&self, token: &str, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.cli(token, &all, None);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit on its own.
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn killed_server_restarted_on_the_same_data_has_every_acknowledged_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Server::start(dir.path(), &[]);
    let root = first
        .root_token()
        .expect("first start prints the root token");
    let api = first.cli_json(
        &root,
        &["apis", "create", "--name", "Prices", "--prefix", "px"],
    );
    let api_id = api["id"].as_str().unwrap().to_owned();
    let mut keys = Vec::new();
    for i in 0..25 {
        let owner = format!("customer{i}");
        let issued = first.cli_json(
            &root,
            &[
                "keys", "create", "--api-id", &api_id, "--env", "live", "--owner", &owner,
            ],
        );
        keys.push(issued["key"].as_str().unwrap().to_owned());
    }
    // No clean shutdown: SIGKILL right after the last acknowledgement.
    first.child.kill().unwrap();
    first.wait(Duration::from_secs(10));

    let second = Server::start(dir.path(), &[]);
    assert_eq!(second.root_token(), None, "the root token is created once");
    for key in &keys {
        let v = second.cli_json(&root, &["keys", "verify", key]);
        assert_eq!(v["code"], "VALID");
    }
}

#[test]
fn sigterm_and_sigint_stop_the_server_cleanly() {
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::start(dir.path(), &[]);
        server.signal(signal);
        let status = server.wait(Duration::from_secs(10));
        assert!(status.success(), "SIG{signal}: {status}");
        assert!(server.log().contains("keyward stopped"));
    }
}

#[test]
fn cli_tour_and_no_plaintext_in_logs_or_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &[("KEYWARD_LOG", "debug")]);
    let root = server.root_token().unwrap();
    let api = server.cli_json(
        &root,
        &["apis", "create", "--name", "Signals", "--prefix", "sig"],
    );
    let api_id = api["id"].as_str().unwrap();

    let out = server.cli(
        &root,
        &[
            "keys",
            "create",
            "--api-id",
            api_id,
            "--env",
            "live",
            "--owner",
            "acme",
            "--scope",
            "signals:read",
            "--metadata",
            r#"{"plan":"pro"}"#,
        ],
        None,
    );
    assert!(out.status.success());
    let human = String::from_utf8(out.stdout).unwrap();
    let key = human
        .lines()
        .find_map(|l| l.strip_prefix("key (shown once, store it now): "))
        .expect("the plaintext is printed once")
        .to_owned();
    let key_id = human.split_whitespace().next().unwrap().to_owned();

    // Verify reads the key from stdin, keeping it out of argv.
    let out = server.cli(
        &root,
        &["keys", "verify", "--scope", "signals:read"],
        Some(&key),
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("VALID"));
    let out = server.cli(
        &root,
        &["keys", "verify", "--scope", "orders:write", &key],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("INSUFFICIENT_SCOPE"));

    let rotated = server.cli_json(&root, &["keys", "rotate", &key_id, "--grace", "3600"]);
    let successor = rotated["key"].as_str().unwrap().to_owned();
    let listed = server.cli_json(&root, &["keys", "list", "--owner", "acme"]);
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2);
    let updated = server.cli_json(&root, &["keys", "update", &key_id, "--disable"]);
    assert_eq!(updated["state"], "disabled");
    let revoked = server.cli_json(&root, &["keys", "revoke", &key_id, "--reason", "tour"]);
    assert_eq!(revoked["state"], "revoked");
    let out = server.cli(&root, &["keys", "verify", &key], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("REVOKED"));

    // A client error is reported with the server's code.
    let out = server.cli(&root, &["keys", "get", "key_missing"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT_FOUND"));
    let out = server.cli("kwa_live_wrong", &["apis", "list"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("UNAUTHENTICATED"));

    server.signal("TERM");
    server.wait(Duration::from_secs(10));

    let log = server.log();
    assert!(
        log.contains("POST") && log.contains("/v1/keys/verify"),
        "requests are logged"
    );
    for planted in [&key, &successor] {
        assert!(!log.contains(planted.as_str()), "a key is in the log");
    }
    assert_eq!(
        log.matches(root.as_str()).count(),
        1,
        "the root token is printed once only"
    );
    let mut files = 0;
    for entry in std::fs::read_dir(&data).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        files += 1;
        for planted in [&key, &successor, &root] {
            let needle = planted.as_bytes();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "a plaintext is on disk"
            );
        }
    }
    assert!(files >= 1);
}

#[test]
fn config_file_is_read_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let from_file = dir.path().join("from-file");
    let config = dir.path().join("keyward.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n",
            from_file.display().to_string()
        ),
    )
    .unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("KEYWARD_DATA_DIR")
        .env_remove("KEYWARD_LISTEN")
        .env_remove("KEYWARD_DATABASE_URL")
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    let server = Server::spawn(command);
    assert!(from_file.join("keyward.db").exists());
    drop(server);

    let flagged = dir.path().join("from-env");
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--config"])
        .arg(&config)
        .env("KEYWARD_DATA_DIR", &flagged)
        .env_remove("KEYWARD_DATABASE_URL")
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    let server = Server::spawn(command);
    assert!(
        flagged.join("keyward.db").exists(),
        "KEYWARD_DATA_DIR beats the file"
    );
    drop(server);

    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nsurprise = 1\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("surprise"));
}

#[test]
fn serve_help_documents_every_option() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--listen",
        "KEYWARD_LISTEN",
        "127.0.0.1:8720",
        "--data-dir",
        "KEYWARD_DATA_DIR",
        "--database-url",
        "KEYWARD_DATABASE_URL",
        "postgres://",
        "--config",
        "KEYWARD_CONFIG",
        "--log",
        "KEYWARD_LOG",
        "--seal",
        "KEYWARD_SEAL",
        "--tls-cert",
        "KEYWARD_TLS_CERT",
        "--tls-key",
        "KEYWARD_TLS_KEY",
        "--tls-client-ca",
        "KEYWARD_TLS_CLIENT_CA",
        "--danger-allow-plaintext",
        "KEYWARD_DANGER_ALLOW_PLAINTEXT",
    ] {
        assert!(
            help.contains(needle),
            "serve --help lacks {needle}:\n{help}"
        );
    }
}

/// A CA and a server certificate it issued for `localhost`, as PEM files in
/// `dir`: (CA, certificate, key). Beside them, `NAME-client.pem` and
/// `NAME-client.key`: a client certificate the CA issued, and its key.
fn tls_files(
    dir: &Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "CLI test CA");
    let ca = params.self_signed(&ca_key).unwrap();
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    for (who, names) in [
        (name.to_owned(), vec!["localhost".to_owned()]),
        (format!("{name}-client"), vec![]),
    ] {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, &who);
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        std::fs::write(dir.join(format!("{who}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{who}.key")), key.serialize_pem()).unwrap();
    }
    paths
}

/// Waits until the server has logged a line containing `needle`.
fn wait_for_log(server: &Server, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_speaks_https_reloads_on_sighup_and_the_cli_trusts_keyward_ca_cert() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path(), "first");
    let mut server = Server::start(
        &dir.path().join("data"),
        &[
            ("KEYWARD_TLS_CERT", cert.to_str().unwrap()),
            ("KEYWARD_TLS_KEY", key.to_str().unwrap()),
        ],
    );
    assert!(server.log().contains("scheme=https"), "{}", server.log());
    let root = server.root_token().unwrap();
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    server.addr = format!("https://localhost:{port}");
    let list = |ca: Option<&Path>| {
        let mut command = Command::new(BIN);
        command
            .args(["apis", "list", "--json"])
            .env("KEYWARD_ADDR", &server.addr)
            .env("KEYWARD_TOKEN", &root)
            .env_remove("KEYWARD_CA_CERT");
        if let Some(ca) = ca {
            command.env("KEYWARD_CA_CERT", ca);
        }
        command.output().unwrap()
    };
    let trusted = list(Some(&ca));
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert!(
        !list(None).status.success(),
        "the private CA is not trusted by default"
    );

    // SIGHUP reads the files again; the CLI trusts the new CA only.
    let (new_ca, new_cert, new_key) = tls_files(dir.path(), "second");
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    server.signal("HUP");
    wait_for_log(&server, "reloaded the TLS certificate");
    assert!(list(Some(&new_ca)).status.success());
    assert!(
        !list(Some(&ca)).status.success(),
        "the old certificate is gone"
    );

    // A broken file is logged and the certificate in use stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    server.signal("HUP");
    wait_for_log(&server, "could not be reloaded");
    assert!(list(Some(&new_ca)).status.success());
    assert!(server.child.try_wait().unwrap().is_none(), "still serving");
    assert!(!server.log().contains("PRIVATE KEY"));
}

#[test]
fn the_cli_presents_its_client_certificate_to_a_mutual_tls_server() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path(), "server");
    let server = Server::start(
        &dir.path().join("data"),
        &[
            ("KEYWARD_TLS_CERT", cert.to_str().unwrap()),
            ("KEYWARD_TLS_KEY", key.to_str().unwrap()),
            ("KEYWARD_TLS_CLIENT_CA", ca.to_str().unwrap()),
        ],
    );
    let root = server.root_token().unwrap();
    let port = server.addr.rsplit(':').next().unwrap();
    let list = |identity: &[(&str, std::path::PathBuf)]| {
        let mut command = Command::new(BIN);
        command
            .args(["apis", "list", "--json"])
            .env("KEYWARD_ADDR", format!("https://localhost:{port}"))
            .env("KEYWARD_TOKEN", &root)
            .env("KEYWARD_CA_CERT", &ca)
            .env_remove("KEYWARD_CLIENT_CERT")
            .env_remove("KEYWARD_CLIENT_KEY")
            .envs(identity.iter().map(|(k, v)| (k, v)));
        command.output().unwrap()
    };
    assert!(
        !list(&[]).status.success(),
        "no client certificate, no answer"
    );
    let client_cert = dir.path().join("server-client.pem");
    let client_key = dir.path().join("server-client.key");
    let with = list(&[
        ("KEYWARD_CLIENT_CERT", client_cert.clone()),
        ("KEYWARD_CLIENT_KEY", client_key),
    ]);
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    let half = list(&[("KEYWARD_CLIENT_CERT", client_cert)]);
    let err = String::from_utf8_lossy(&half.stderr);
    assert!(err.contains("KEYWARD_CLIENT_KEY"), "{err}");
}

#[test]
fn plaintext_on_a_public_address_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |extra: &[&str]| {
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .env_remove("KEYWARD_CONFIG")
            .env_remove("KEYWARD_DATABASE_URL")
            .env_remove("KEYWARD_DANGER_ALLOW_PLAINTEXT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    };
    let out = serve(&[]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without TLS"), "{err}");
    assert!(err.contains("--danger-allow-plaintext"), "{err}");
    let mut server = Server::spawn(serve(&["--danger-allow-plaintext"]));
    server.signal("TERM");
    assert!(server.wait(Duration::from_secs(10)).success());
    let out = serve(&["--tls-cert", "only-a-cert.pem"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-key"), "{err}");

    let routes = dir.path().join("routes.toml");
    std::fs::write(&routes, "[[route]]\npath = \"/\"\n").unwrap();
    let out = Command::new(BIN)
        .args([
            "gateway",
            "--upstream",
            "http://127.0.0.1:9",
            "--listen",
            "0.0.0.0:0",
        ])
        .arg("--routes")
        .arg(&routes)
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("KEYWARD_CONFIG")
        .env_remove("KEYWARD_DATABASE_URL")
        .env_remove("KEYWARD_DANGER_ALLOW_PLAINTEXT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the gateway would listen on 0.0.0.0:0 without TLS"),
        "{err}"
    );
    assert!(!err.contains("serving"), "{err}");
}

#[test]
fn a_bad_database_url_fails_to_start_with_a_clear_error() {
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "mysql://x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unsupported database URL"), "{err}");
}

#[test]
fn cli_sets_key_roles_and_critical_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let root = server.root_token().unwrap();
    let api = server.cli_json(
        &root,
        &[
            "apis",
            "create",
            "--name",
            "Exchange",
            "--prefix",
            "exc",
            "--role",
            "trader=prices:read,orders:write",
            "--role",
            "viewer=prices:read",
            "--critical-scope",
            "withdrawals:write",
        ],
    );
    assert_eq!(
        api["roles"],
        serde_json::json!({"trader": ["orders:write", "prices:read"], "viewer": ["prices:read"]})
    );
    assert_eq!(
        api["critical_scopes"],
        serde_json::json!(["withdrawals:write"])
    );
    let api_id = api["id"].as_str().unwrap();
    let shown = server.cli(&root, &["apis", "get", api_id], None);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("role trader: orders:write,prices:read")
            && shown.contains("critical scopes: withdrawals:write"),
        "{shown}"
    );
    let issued = server.cli_json(
        &root,
        &[
            "keys", "create", "--api-id", api_id, "--env", "live", "--owner", "acme", "--role",
            "trader",
        ],
    );
    assert_eq!(issued["roles"], serde_json::json!(["trader"]));
    let key = issued["key"].as_str().unwrap().to_owned();
    let key_id = issued["id"].as_str().unwrap().to_owned();
    let out = server.cli(
        &root,
        &["keys", "verify", &key, "--scope", "orders:write"],
        None,
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("VALID"));

    // A role the API does not define is refused with the server's message.
    let out = server.cli(&root, &["keys", "update", &key_id, "--role", "admin"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("INVALID_REQUEST") && err.contains("roles[0]"),
        "{err}"
    );
    // A role keys hold cannot go; a malformed flag never reaches the server.
    let out = server.cli(&root, &["apis", "update", api_id, "--no-roles"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("CONFLICT"));
    let out = server.cli(&root, &["apis", "update", api_id, "--role", "trader"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME=SCOPE"));

    let changed = server.cli_json(
        &root,
        &[
            "apis",
            "update",
            api_id,
            "--role",
            "trader=prices:read",
            "--role",
            "viewer=prices:read",
            "--no-critical-scopes",
        ],
    );
    assert_eq!(
        changed["roles"]["trader"],
        serde_json::json!(["prices:read"])
    );
    assert_eq!(changed["critical_scopes"], serde_json::json!([]));
    let out = server.cli(
        &root,
        &["keys", "verify", &key, "--scope", "orders:write"],
        None,
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("INSUFFICIENT_SCOPE"));
    let updated = server.cli_json(&root, &["keys", "update", &key_id, "--no-roles"]);
    assert_eq!(updated["roles"], serde_json::json!([]));
    let removed = server.cli_json(&root, &["apis", "update", api_id, "--no-roles"]);
    assert_eq!(removed["roles"], serde_json::json!({}));
}

#[test]
fn cli_sets_limits_credits_and_allowlists() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let root = server.root_token().unwrap();
    let api = server.cli_json(
        &root,
        &["apis", "create", "--name", "Orders", "--prefix", "ord"],
    );
    let api_id = api["id"].as_str().unwrap();
    let issued = server.cli_json(
        &root,
        &[
            "keys",
            "create",
            "--api-id",
            api_id,
            "--env",
            "live",
            "--owner",
            "acme",
            "--ratelimit",
            "burst:2:60000",
            "--credits",
            "5",
            "--refill",
            "monthly:5:3",
            "--ip",
            "10.0.0.0/8",
        ],
    );
    assert_eq!(issued["ratelimits"][0]["limit"], 2);
    assert_eq!(
        issued["credits"]["refill"],
        serde_json::json!({"interval": "monthly", "amount": 5, "day": 3})
    );
    let key = issued["key"].as_str().unwrap().to_owned();
    let id = issued["id"].as_str().unwrap().to_owned();

    let out = server.cli(
        &root,
        &["keys", "verify", &key, "--ip", "10.2.3.4", "--cost", "2"],
        None,
    );
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        line.starts_with("VALID") && line.contains("ratelimit=0/2") && line.contains("credits=3"),
        "{line}"
    );
    let out = server.cli(&root, &["keys", "verify", &key, "--ip", "192.0.2.1"], None);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("IP_NOT_ALLOWED"));
    let out = server.cli(&root, &["keys", "verify", &key, "--ip", "10.2.3.4"], None);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("RATE_LIMITED"));

    let updated = server.cli_json(
        &root,
        &[
            "keys",
            "update",
            &id,
            "--no-ratelimits",
            "--any-ip",
            "--no-credits",
        ],
    );
    assert_eq!(updated["ratelimits"], serde_json::json!([]));
    assert_eq!(updated["ip_allowlist"], serde_json::json!([]));
    assert_eq!(updated["credits"], Value::Null);
    let out = server.cli(&root, &["keys", "verify", &key], None);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("VALID"));

    let set = server.cli_json(
        &root,
        &[
            "owners",
            "set-ratelimits",
            "acme",
            "--ratelimit",
            "day:1:86400000",
        ],
    );
    assert_eq!(set["ratelimits"][0]["name"], "day");
    assert!(server
        .cli(&root, &["keys", "verify", &key], None)
        .status
        .success());
    let out = server.cli(&root, &["keys", "verify", &key], None);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("RATE_LIMITED"));
    let out = server.cli(
        &root,
        &[
            "keys",
            "create",
            "--api-id",
            api_id,
            "--env",
            "live",
            "--owner",
            "x",
            "--ratelimit",
            "oops",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME:LIMIT:DURATION_MS"));
}

#[test]
fn an_operator_initialises_unseals_rotates_and_seals_a_shamir_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("KEYWARD_SEAL", "shamir")]);
    let root = server.root_token().unwrap();
    let text = |out: &Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout.clone()).unwrap()
    };
    let status = text(&server.cli("", &["operator", "status"], None));
    assert_eq!(status.trim(), "seal: shamir  not initialised");

    let init = text(&server.cli(
        &root,
        &["operator", "init", "--shares", "3", "--threshold", "2"],
        None,
    ));
    let shares: Vec<String> = init
        .lines()
        .filter_map(|l| l.strip_prefix("Unseal share "))
        .map(|l| l.split_once(": ").unwrap().1.to_owned())
        .collect();
    assert_eq!(shares.len(), 3);
    assert!(init.contains("Any 2 of them unseal"));

    // Shares are read from standard input, never from the command line.
    let first = text(&server.cli("", &["operator", "unseal"], Some(&shares[2])));
    assert_eq!(first.trim(), "seal: shamir  sealed (unseal progress 1/2)");
    let again = server.cli("", &["operator", "unseal"], Some(&shares[2]));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("INVALID_SHARE"));
    let done = text(&server.cli("", &["operator", "unseal"], Some(&shares[0])));
    assert_eq!(done.trim(), "seal: shamir  unsealed (keyring version 1)");

    // Secrets from the CLI; a value given as `-` is read from stdin.
    let put = text(&server.cli(
        &root,
        &[
            "secrets",
            "put",
            "exchanges/binance",
            "api_key=bn-1",
            "api_secret=-",
        ],
        Some("cli-planted-secret\n"),
    ));
    assert_eq!(put.trim(), "secret/exchanges/binance  version 1");
    let got = text(&server.cli(&root, &["secrets", "get", "exchanges/binance"], None));
    assert!(
        got.contains("api_key=bn-1") && got.contains("api_secret=cli-planted-secret"),
        "{got}"
    );
    let listed = text(&server.cli(&root, &["secrets", "list", "exchanges"], None));
    assert_eq!(listed.trim(), "binance");
    let stale = server.cli(
        &root,
        &["secrets", "put", "exchanges/binance", "--cas", "0", "k=v"],
        None,
    );
    assert!(String::from_utf8_lossy(&stale.stderr).contains("check-and-set"));
    let rotated = text(&server.cli(&root, &["operator", "rotate"], None));
    assert_eq!(rotated.trim(), "keyring version 2");
    let rewrapped = text(&server.cli(&root, &["operator", "rewrap"], None));
    assert!(rewrapped.starts_with("rewrapped "), "{rewrapped}");
    let current = format!("{}\n{}\n", shares[0], shares[2]);
    let rekeyed = text(&server.cli(
        &root,
        &["operator", "rekey", "--shares", "2", "--threshold", "2"],
        Some(&current),
    ));
    assert_eq!(
        rekeyed
            .lines()
            .filter(|l| l.starts_with("Unseal share "))
            .count(),
        2
    );
    assert!(rekeyed.contains("the old shares no longer unseal"));
    let sealed = server.cli_json(&root, &["operator", "seal"]);
    assert_eq!(sealed["sealed"], true);
    assert_eq!(sealed["progress"], 0);

    // The shares and the secret are in no log line and nowhere on disk.
    let log = server.log();
    assert!(!log.contains("cli-planted-secret"));
    let planted = "cli-planted-secret".to_owned();
    for share in shares.iter().chain(std::iter::once(&planted)) {
        assert!(!log.contains(share.as_str()));
        let mut stack = vec![dir.path().to_path_buf()];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            } else {
                let bytes = std::fs::read(&path).unwrap();
                assert!(!bytes.windows(share.len()).any(|w| w == share.as_bytes()));
            }
        }
    }
}

#[test]
fn scan_report_revokes_the_leaked_keys_it_found() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let root = server.root_token().unwrap();
    let api = server.cli_json(
        &root,
        &["apis", "create", "--name", "Prices", "--prefix", "px"],
    );
    let api_id = api["id"].as_str().unwrap();
    let issue = || {
        let created = server.cli_json(
            &root,
            &[
                "keys", "create", "--api-id", api_id, "--env", "live", "--owner", "acme",
            ],
        );
        created["key"].as_str().unwrap().to_owned()
    };
    let (leaked, kept) = (issue(), issue());
    let reporter = server.cli_json(
        &root,
        &[
            "tokens",
            "create",
            "--name",
            "ci",
            "--scope",
            "leaks:report",
        ],
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(repo.join("bot.env"), format!("PX_KEY={leaked}\n")).unwrap();
    let out = Command::new(BIN)
        .args(["scan", ".", "--report", &server.addr, "--format", "json"])
        .current_dir(&repo)
        .env("KEYWARD_TOKEN", &reporter)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("reported 1 Keyward key"), "{stderr}");
    assert!(!stderr.contains(&leaked) && !String::from_utf8_lossy(&out.stdout).contains(&leaked));

    let verify = |key: &str| {
        let out = server.cli(&root, &["keys", "verify"], Some(key));
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(
        verify(&leaked).starts_with("REVOKED"),
        "{}",
        verify(&leaked)
    );
    assert!(verify(&kept).starts_with("VALID"));

    // Without a token the report is refused and the scan fails.
    let out = Command::new(BIN)
        .args(["scan", ".", "--report", &server.addr])
        .current_dir(&repo)
        .env_remove("KEYWARD_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Field `n` (from 1, as in proc(5)) of each thread of `pid` whose command
/// name passes `name`.
fn thread_fields(pid: u32, name: impl Fn(&str) -> bool, n: usize) -> Vec<i64> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        let (head, rest) = stat.rsplit_once(')').unwrap();
        if name(head.split_once('(').unwrap().1) {
            found.push(rest.split_whitespace().nth(n - 3).unwrap().parse().unwrap());
        }
    }
    found
}

/// `keyward gateway` with `routes` (TOML) in front of a closed port: the
/// process, and the kernel scheduling policy of each of its connection
/// threads once they have all started.
fn gateway_thread_policies(routes: &str) -> (Child, Vec<i64>) {
    const POLICY: usize = 41;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.toml");
    std::fs::write(&file, routes).unwrap();
    let mut child = Command::new(BIN)
        .args(["gateway", "--upstream", "http://127.0.0.1:9", "--listen"])
        .args(["127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg("--routes")
        .arg(&file)
        .env_remove("KEYWARD_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let policies = thread_fields(child.id(), |n| n.starts_with("keyward-gatew"), POLICY);
        if policies.len() == 2 {
            return (child, policies);
        }
        assert!(child.try_wait().unwrap().is_none(), "the gateway exited");
        assert!(
            Instant::now() < deadline,
            "no gateway threads: {policies:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[cfg(target_os = "linux")]
fn gateway_threads_run_batch_scheduling_unless_told_otherwise() {
    const SCHED_BATCH: i64 = 3;
    // What the gateway's threads start with: this test's own policy,
    // normally SCHED_OTHER (0).
    let inherited = thread_fields(std::process::id(), |_| true, 41)[0];
    assert_ne!(
        inherited, SCHED_BATCH,
        "run this test under the default policy"
    );
    let route = "[[route]]\npath = \"/\"\n";
    let (mut batch, policies) = gateway_thread_policies(&format!("threads = 2\n{route}"));
    assert_eq!(policies, [SCHED_BATCH, SCHED_BATCH]);
    // The process's other threads (the store's, the runtime's) keep the
    // default.
    let others = thread_fields(batch.id(), |n| !n.starts_with("keyward-gatew"), 41);
    assert!(
        others.len() > 2 && others.iter().all(|p| *p == inherited),
        "{others:?}"
    );
    let _ = batch.kill();
    let _ = batch.wait();

    let (mut normal, policies) =
        gateway_thread_policies(&format!("threads = 2\nscheduling = \"normal\"\n{route}"));
    assert_eq!(policies, [inherited, inherited]);
    let _ = normal.kill();
    let _ = normal.wait();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("routes.toml");
    std::fs::write(&file, format!("scheduling = \"fifo\"\n{route}")).unwrap();
    let out = Command::new(BIN)
        .args(["gateway", "--upstream", "http://127.0.0.1:9", "--data-dir"])
        .arg(dir.path())
        .arg("--routes")
        .arg(&file)
        .env_remove("KEYWARD_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fifo"), "{err}");
}

/// `GET path` with an admin token; the status and the JSON answer.
fn http_get(addr: &str, token: &str, path: &str) -> (u16, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .get(format!("{addr}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    })
}

/// Waits until `token` is refused (revocations reach a server's token cache
/// through the change feed).
fn wait_until_refused(server: &Server, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _) = http_get(&server.addr, token, "/v1/tokens");
        if status == 401 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the old token still works ({status})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `keyward operator root-token` on `data_dir`, shares on stdin.
fn recover_root(data_dir: &Path, extra: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(["operator", "root-token", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env_remove("KEYWARD_DATABASE_URL")
        .env_remove("KEYWARD_CONFIG")
        .env_remove("KEYWARD_SEAL")
        .env_remove("KEYWARD_TOKEN")
        .env("USER", "ops-on-call")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// The token a successful recovery printed.
fn recovered_token(out: &Output) -> String {
    assert!(
        out.status.success(),
        "recovery failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("root admin token (shown once, store it now): "))
        .unwrap_or_else(|| panic!("no token in {stdout:?}"))
        .to_owned()
}

/// The recovery's audit: a `token.recover` by no one, with the host user,
/// and a `token.revoke` of the old root that names its successor.
fn assert_recovery_audited(server: &Server, token: &str, old_root_id: &str) {
    let (status, recovered) = http_get(&server.addr, token, "/v1/audit?action=token.recover");
    assert_eq!(status, 200, "{recovered}");
    let event = &recovered["events"][0];
    assert!(event["actor"].is_null(), "{event}");
    assert_eq!(event["details"]["host_user"], "ops-on-call");
    assert_eq!(
        event["details"]["revokes"],
        serde_json::json!([old_root_id])
    );
    let new_id = event["target"].as_str().unwrap();
    let (_, revoked) = http_get(
        &server.addr,
        token,
        &format!("/v1/audit?action=token.revoke&target={old_root_id}"),
    );
    let event = &revoked["events"][0];
    assert!(event["actor"].is_null(), "{event}");
    assert_eq!(event["details"]["recovery"], true);
    assert_eq!(event["details"]["replaced_by"], new_id);
}

fn root_id(server: &Server, root: &str) -> String {
    let tokens = server.cli_json(root, &["tokens", "list"]);
    tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "root" && t["revoked_at"].is_null())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_first_start_on_a_port_in_use_leaves_no_unshown_root_token() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["serve", "--listen", &addr, "--data-dir"])
        .arg(dir.path())
        .env_remove("KEYWARD_DATABASE_URL")
        .env_remove("KEYWARD_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen"), "{err}");
    assert!(!err.contains("root admin token"), "{err}");
    drop(taken);

    // The next start that can serve creates the token and shows it.
    let server = Server::start(dir.path(), &[]);
    let root = server
        .root_token()
        .expect("the first start that serves prints the root token");
    let tokens = server.cli_json(&root, &["tokens", "list"]);
    assert_eq!(tokens["tokens"].as_array().unwrap().len(), 1, "{tokens}");
}

#[test]
fn a_first_start_with_a_bad_gateway_setting_leaves_no_unshown_root_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keyward.toml");
    // A [gateway] without `listen` is refused after the main listener is
    // bound: the last check of a start.
    std::fs::write(
        &config,
        "[gateway]\nupstream = \"http://127.0.0.1:9\"\n[[gateway.route]]\nmethod = \"GET\"\npath = \"/\"\nscopes = []\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .env_remove("KEYWARD_DATABASE_URL")
        .env_remove("KEYWARD_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[gateway] needs listen"), "{err}");
    assert!(!err.contains("root admin token"), "{err}");

    let server = Server::start(&data, &[]);
    let root = server.root_token().expect("the root token is shown now");
    server.cli_json(&root, &["tokens", "list"]);
}

#[test]
fn root_token_recovery_on_a_file_seal_needs_the_master_key_and_replaces_root() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let root = server.root_token().unwrap();
    let old_id = root_id(&server, &root);
    let limited = server.cli_json(
        &root,
        &["tokens", "create", "--name", "ci", "--scope", "tokens:read"],
    );
    let limited = limited["token"].as_str().unwrap().to_owned();

    // Without the store's master.key, nothing is done.
    let key = dir.path().join("master.key");
    let aside = dir.path().join("master.key.aside");
    std::fs::rename(&key, &aside).unwrap();
    let refused = recover_root(dir.path(), &[], "");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("master.key is missing"), "{err}");
    assert!(!err.contains("Serving sealed"), "{err}");
    assert!(!String::from_utf8_lossy(&refused.stdout).contains("root admin token"));
    // Nor with the master.key of another store.
    let other_dir = tempfile::tempdir().unwrap();
    drop(Server::start(other_dir.path(), &[]));
    std::fs::copy(other_dir.path().join("master.key"), &key).unwrap();
    let refused = recover_root(dir.path(), &[], "");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("is not the master key that sealed this store"),
        "{err}"
    );
    assert_eq!(http_get(&server.addr, &root, "/v1/tokens").0, 200);
    std::fs::rename(&aside, &key).unwrap();

    // A directory that holds no store is refused, not created.
    let empty = dir.path().join("nothing-here");
    let out = recover_root(&empty, &[], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Keyward store"));
    assert!(!empty.exists());

    let out = recover_root(dir.path(), &[], "");
    let new_root = recovered_token(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains(&old_id));
    wait_until_refused(&server, &root);
    let tokens = server.cli_json(&new_root, &["tokens", "list"]);
    assert_eq!(tokens["tokens"].as_array().unwrap().len(), 3, "{tokens}");
    // A token that could not do everything is left alone.
    assert_eq!(http_get(&server.addr, &limited, "/v1/tokens").0, 200);
    assert_recovery_audited(&server, &new_root, &old_id);
}

#[test]
fn root_token_recovery_on_a_sealed_shamir_store_needs_the_shares() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("KEYWARD_SEAL", "shamir")]);
    let root = server.root_token().unwrap();
    let old_id = root_id(&server, &root);
    let init = server.cli(
        &root,
        &["operator", "init", "--shares", "3", "--threshold", "2"],
        None,
    );
    assert!(init.status.success());
    let shares: Vec<String> = String::from_utf8(init.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("Unseal share "))
        .map(|l| l.split_once(": ").unwrap().1.to_owned())
        .collect();
    assert_eq!(shares.len(), 3);

    // The seal the store has must be named, as for `serve`.
    let wrong_seal = recover_root(dir.path(), &[], "");
    assert!(!wrong_seal.status.success());
    assert!(String::from_utf8_lossy(&wrong_seal.stderr).contains("pass --seal shamir"));

    let seal = ["--seal", "shamir"];
    let none = recover_root(dir.path(), &seal, "");
    assert!(!none.status.success());
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(err.contains("needs 2 unseal shares"), "{err}");

    let one = recover_root(dir.path(), &seal, &format!("{}\n", shares[1]));
    assert!(!one.status.success());
    assert!(String::from_utf8_lossy(&one.stderr).contains("(1 given)"));

    // A share of another seal is checked against the stored digests.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Server::start(other_dir.path(), &[("KEYWARD_SEAL", "shamir")]);
    let other_root = other.root_token().unwrap();
    let other_init = other.cli(
        &other_root,
        &["operator", "init", "--shares", "2", "--threshold", "2"],
        None,
    );
    let foreign = String::from_utf8(other_init.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Unseal share 1: "))
        .unwrap()
        .to_owned();
    let forged = recover_root(dir.path(), &seal, &format!("{}\n{foreign}\n", shares[0]));
    assert!(!forged.status.success());
    assert!(String::from_utf8_lossy(&forged.stderr).contains("unseal share 2 was refused"));
    assert_eq!(http_get(&server.addr, &root, "/v1/tokens").0, 200);

    let out = recover_root(
        dir.path(),
        &seal,
        &format!("{}\n{}\n", shares[0], shares[2]),
    );
    let new_root = recovered_token(&out);
    wait_until_refused(&server, &root);
    server.cli_json(&new_root, &["tokens", "list"]);
    assert_recovery_audited(&server, &new_root, &old_id);
    // The running server is still sealed: recovery unsealed only itself.
    let status = server.cli("", &["operator", "status"], None);
    assert!(String::from_utf8_lossy(&status.stdout).contains("sealed (unseal progress 0/2)"));
}

#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let root = server.root_token().unwrap();
    let api = server.cli_json(&root, &["apis", "create", "--name", "P", "--prefix", "pp"]);
    let api_id = api["id"].as_str().unwrap().to_owned();
    for owner in ["a", "b", "c"] {
        server.cli_json(
            &root,
            &[
                "keys", "create", "--api-id", &api_id, "--env", "live", "--owner", owner,
            ],
        );
    }
    for args in [
        &["keys", "list"][..],
        &["keys", "list", "--json"],
        &["tokens", "list"],
        &["apis", "list"],
        &["scan", "rules", "list"],
    ] {
        // The reader is gone before the command writes a byte.
        let mut child = Command::new(BIN)
            .args(args)
            .env("KEYWARD_ADDR", &server.addr)
            .env("KEYWARD_TOKEN", &root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {} {err}", out.status);
        assert!(err.is_empty(), "{args:?}: {err}");
    }
    // As operators type it.
    let out = Command::new("sh")
        .args(["-c", &format!("{BIN} keys list | head -1")])
        .env("KEYWARD_ADDR", &server.addr)
        .env("KEYWARD_TOKEN", &root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn secrets_get_of_a_deleted_version_says_how_to_restore_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let root = server.root_token().unwrap();
    for value in ["a=1", "a=2"] {
        let out = server.cli(&root, &["secrets", "put", "foo", value], None);
        assert!(out.status.success());
    }
    let out = server.cli(&root, &["secrets", "delete", "foo"], None);
    assert!(out.status.success());

    let got = server.cli(&root, &["secrets", "get", "foo"], None);
    assert!(!got.status.success());
    let err = String::from_utf8_lossy(&got.stderr);
    assert!(!err.contains("-: -"), "{err}");
    assert!(
        err.contains("version 2 of secret/foo was deleted at "),
        "{err}"
    );
    assert!(
        err.contains("`keyward secrets undelete foo --versions 2` restores it"),
        "{err}"
    );

    // The advice works as written.
    let out = server.cli(
        &root,
        &["secrets", "undelete", "foo", "--versions", "2"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = server.cli(&root, &["secrets", "get", "foo"], None);
    assert!(String::from_utf8_lossy(&got.stdout).contains("a=2"));

    // Other refusals carry the server's code and message.
    let missing = server.cli(&root, &["secrets", "get", "nothing"], None);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(
        err.contains("NOT_FOUND: ") && err.contains("(HTTP 404)"),
        "{err}"
    );
    let unmounted = server.cli(&root, &["secrets", "--mount", "nomount", "get", "x"], None);
    let err = String::from_utf8_lossy(&unmounted.stderr);
    assert!(!err.contains("-: -") && err.contains("(HTTP 404)"), "{err}");
}

#[test]
fn unseal_on_a_file_seal_says_it_unseals_itself() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let out = server.cli("", &["operator", "unseal"], Some("not-a-share\n"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("this server's seal is `file`"), "{err}");
    assert!(err.contains("unseals itself at every start"), "{err}");
    let root = server.root_token().unwrap();
    let out = server.cli(&root, &["operator", "init"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("seal is `file`"),
        "{err}"
    );
}

/// A SoftHSM2 token in `dir`; the variables a process needs to use it.
fn softhsm_token(dir: &Path) -> (String, std::path::PathBuf) {
    const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
    assert!(Path::new(SOFTHSM).exists(), "apt-get install softhsm2");
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "keyward-cli",
            "--so-pin",
            "so-pin-1",
            "--pin",
            "user-pin-1",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util must be installed (apt-get install softhsm2)");
    assert!(out.status.success(), "{out:?}");
    let config = dir.join("keyward.toml");
    std::fs::write(
        &config,
        format!(
            "[seal]\ntype = \"pkcs11\"\npkcs11_module = \"{SOFTHSM}\"\npkcs11_token_label = \"keyward-cli\"\n"
        ),
    )
    .unwrap();
    (conf.display().to_string(), config)
}

#[test]
fn a_first_start_with_a_wrong_hsm_pin_leaves_no_unshown_root_token() {
    let dir = tempfile::tempdir().unwrap();
    let (softhsm_conf, config) = softhsm_token(dir.path());
    let data = dir.path().join("data");
    let serve = |pin: &str| {
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .env_remove("KEYWARD_DATABASE_URL")
            .env_remove("KEYWARD_CONFIG")
            .env_remove("KEYWARD_SEAL")
            .env("SOFTHSM2_CONF", &softhsm_conf)
            .env("KEYWARD_HSM_PIN", pin)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    };
    let out = serve("guessed-pin").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open the seal"), "{err}");
    assert!(!err.contains("root admin token"), "{err}");

    let server = Server::spawn(serve("user-pin-1"));
    let root = server
        .root_token()
        .expect("the first start that unseals prints the root token");
    let old_id = root_id(&server, &root);

    // Recovery on a pkcs11 seal needs the HSM to unwrap the master key.
    let recover = |pin: &str| {
        Command::new(BIN)
            .args(["operator", "root-token", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .env_remove("KEYWARD_DATABASE_URL")
            .env_remove("KEYWARD_SEAL")
            .env("SOFTHSM2_CONF", &softhsm_conf)
            .env("KEYWARD_HSM_PIN", pin)
            .env("USER", "ops-on-call")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let refused = recover("guessed-pin");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("cannot open the seal"), "{err}");
    assert!(!err.contains("guessed-pin"), "{err}");
    assert_eq!(http_get(&server.addr, &root, "/v1/tokens").0, 200);

    let new_root = recovered_token(&recover("user-pin-1"));
    wait_until_refused(&server, &root);
    assert_recovery_audited(&server, &new_root, &old_id);
}

#[test]
fn an_id_holding_path_characters_names_no_other_route() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let root = server.root_token().unwrap();
    let token = server.cli_json(
        &root,
        &["tokens", "create", "--name", "ci", "--scope", "keys:read"],
    );
    let token_id = token["id"].as_str().unwrap();
    // Unencoded, this "key id" walked up to the token's revoke route.
    let disguised = format!("key_x/../../tokens/{token_id}");
    let out = server.cli(&root, &["keys", "revoke", &disguised], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("(HTTP 400)") || err.contains("(HTTP 404)"),
        "{err}"
    );
    let tokens = server.cli_json(&root, &["tokens", "list"]);
    let listed = tokens["tokens"].as_array().unwrap();
    let ci = listed.iter().find(|t| t["id"] == token_id).unwrap();
    assert!(ci["revoked_at"].is_null(), "{ci}");
    // A query or fragment in an id stays part of the id.
    let out = server.cli(&root, &["keys", "get", "key_x?limit=1#y"], None);
    assert!(!out.status.success());
}

/// The code an authenticator app shows for `secret` (base32), `drift`
/// steps from now.
fn totp_code(secret: &str, drift: i64) -> String {
    let bytes = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let step = (now / 30).checked_add_signed(drift).unwrap();
    format!(
        "{:06}",
        keyward_crypto::totp::Secret::from_bytes(bytes).code(step, 6)
    )
}

#[test]
fn an_operator_signs_in_enrols_totp_steps_up_and_revokes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let root = server.root_token().unwrap();
    let session = dir.path().join("session.json");
    let session = session.to_str().unwrap();
    let password = [("KEYWARD_PASSWORD", "plum-violet-harbor-42")];
    let out = server.cli_as(
        &[password[0], ("KEYWARD_TOKEN", root.as_str())],
        &[
            "users",
            "create",
            "--email",
            "Ops@Example.com",
            "--role",
            "owner",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ops@example.com  roles=owner"));
    let as_user = [("KEYWARD_SESSION_FILE", session), password[0]];
    // A wrong password is refused and stores nothing.
    let out = server.cli_as(
        &[
            ("KEYWARD_SESSION_FILE", session),
            ("KEYWARD_PASSWORD", "not-it-at-all-1"),
        ],
        &["login", "--email", "ops@example.com"],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("UNAUTHENTICATED"));
    assert!(!Path::new(session).exists());
    let out = server.cli_as(&as_user, &["login", "--email", "ops@example.com"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The session file is the user's alone.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(session).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let enrolled = server.cli_as(&as_user, &["auth", "totp", "--json"], None);
    let enrolled: Value = serde_json::from_slice(&enrolled.stdout).unwrap();
    let secret = enrolled["secret"].as_str().unwrap().to_owned();
    let out = server.cli_as(
        &as_user,
        &["auth", "totp-confirm", &totp_code(&secret, -1)],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).matches("-").count(),
        10
    );
    // Signing in again asks for the code, read from standard input.
    let out = server.cli_as(
        &as_user,
        &["login", "--email", "ops@example.com"],
        Some(&format!("{}\n", totp_code(&secret, 0))),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let api = server.cli_json(
        &root,
        &["apis", "create", "--name", "Exchange", "--prefix", "exc"],
    );
    let api = api["id"].as_str().unwrap();
    let key = server.cli_json(
        &root,
        &[
            "keys", "create", "--api-id", api, "--env", "live", "--owner", "acme",
        ],
    );
    // Signed in with a code: stepped up, so the incident button works.
    let out = server.cli_as(
        &as_user,
        &[
            "keys",
            "bulk-revoke",
            "--owner",
            "acme",
            "--reason",
            "drill",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoked 1"));
    let verified = server.cli(
        &root,
        &["keys", "verify"],
        Some(key["key"].as_str().unwrap()),
    );
    assert!(String::from_utf8_lossy(&verified.stdout).contains("REVOKED"));
    let out = server.cli_as(&as_user, &["auth", "step-up", &totp_code(&secret, 1)], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = server.cli_as(&as_user, &["access-review", "--json"], None);
    let review: Value = serde_json::from_slice(&out.stdout).unwrap();
    let user = review["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "user")
        .unwrap();
    assert_eq!(user["totp_enrolled"], true);
    // Signing out ends the session on the server and forgets it here.
    let out = server.cli_as(&as_user, &["logout"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!Path::new(session).exists());
    let out = server.cli_as(&as_user, &["auth", "whoami"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no admin token"));
    assert!(
        !server.log().contains("plum-violet-harbor-42"),
        "no password in the log"
    );
}

/// Runs `keyward audit verify` on a data directory.
fn audit_verify(data_dir: &Path, json: bool) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(["audit", "verify", "--data-dir"])
        .arg(data_dir)
        .env_remove("KEYWARD_DATABASE_URL")
        .env_remove("KEYWARD_CONFIG");
    if json {
        command.arg("--json");
    }
    command.output().unwrap()
}

/// Runs `sql` on the SQLite file of a data directory, around Keyward.
fn tamper(data_dir: &Path, sql: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = format!("sqlite://{}", data_dir.join("keyward.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::raw_sql(sql).execute(&pool).await.unwrap();
        pool.close().await;
    });
}

fn http_post(addr: &str, token: &str, path: &str) -> (u16, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("{addr}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    })
}

#[test]
fn audit_verify_finds_an_edited_event_offline_and_the_server_audits_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let root = server.root_token().unwrap();
    let api = server.cli_json(
        &root,
        &["apis", "create", "--name", "Prices", "--prefix", "px"],
    );
    let api_id = api["id"].as_str().unwrap();
    for owner in ["acme", "globex"] {
        server.cli_json(
            &root,
            &[
                "keys", "create", "--api-id", api_id, "--env", "live", "--owner", owner,
            ],
        );
    }
    let status = server.cli_json(&root, &["audit", "status"]);
    let head = status["head"]["sequence"].as_u64().unwrap();
    assert!(head >= 3, "{status}");
    assert_eq!(status["head"]["hash"].as_str().unwrap().len(), 64);

    // Intact, read straight from the store while the server runs.
    let out = audit_verify(&data, true);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["events"], head);
    assert_eq!(report["first_bad"], Value::Null);
    let out = audit_verify(&data, false);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("intact: {head} events chained")
    );

    // The API's creation is made to look like another name.
    tamper(
        &data,
        r#"UPDATE audit_events SET details = '{"name":"Other"}' WHERE action = 'api.create'"#,
    );
    let out = audit_verify(&data, true);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["intact"], false);
    assert_eq!(report["first_bad"]["kind"], "edited", "{report}");
    let bad = report["first_bad"]["sequence"].as_u64().unwrap();
    assert!(bad >= 1 && bad <= head, "{report}");
    let out = audit_verify(&data, false);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with(&format!("TAMPERED at sequence {bad}: edited")),
        "{out:?}"
    );

    // The server finds it too, and records the finding once.
    let (code, check) = http_post(&server.addr, &root, "/v1/audit/verify");
    assert_eq!(code, 200, "{check}");
    assert_eq!(check["intact"], false);
    assert_eq!(check["first_bad"]["sequence"], bad);
    let (code, _) = http_post(&server.addr, &root, "/v1/audit/verify");
    assert_eq!(code, 200);
    let (_, found) = http_get(
        &server.addr,
        &root,
        "/v1/audit?action=audit.tamper_detected",
    );
    let events = found["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{found}");
    assert_eq!(events[0]["details"]["sequence"], bad);
    assert_eq!(events[0]["details"]["kind"], "edited");
    let (_, status) = http_get(&server.addr, &root, "/v1/audit/status");
    assert_eq!(status["last_verification"]["intact"], false, "{status}");

    // No store where one is named: an error, not a verdict.
    let out = audit_verify(&dir.path().join("nowhere"), true);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Keyward store"));
}

/// Waits until the witness file's last checkpoint is at `sequence`.
fn wait_for_witness(path: &Path, sequence: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let lines: Vec<Value> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.last().and_then(|l| l["sequence"].as_u64()) == Some(sequence) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of {sequence}: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_tail_cut_with_its_checkpoints_is_found_against_the_witness_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let witness = dir.path().join("witness.jsonl");
    let config = dir.path().join("keyward.toml");
    std::fs::write(
        &config,
        format!(
            "[audit]\ncheckpoint_interval = \"1s\"\nwitness_file = \"{}\"\n",
            witness.display()
        ),
    )
    .unwrap();
    let mut server = Server::start(&data, &[("KEYWARD_CONFIG", config.to_str().unwrap())]);
    let root = server.root_token().unwrap();
    let api = server.cli_json(
        &root,
        &["apis", "create", "--name", "Prices", "--prefix", "px"],
    );
    let api_id = api["id"].as_str().unwrap().to_owned();
    let first = server.cli_json(&root, &["audit", "status"])["head"]["sequence"]
        .as_u64()
        .unwrap();
    wait_for_witness(&witness, first);
    for owner in ["acme", "globex"] {
        server.cli_json(
            &root,
            &[
                "keys", "create", "--api-id", &api_id, "--env", "live", "--owner", owner,
            ],
        );
    }
    let status = server.cli_json(&root, &["audit", "status"]);
    let head = status["head"]["sequence"].as_u64().unwrap();
    assert!(head > first, "{status}");
    let lines = wait_for_witness(&witness, head);
    let status = server.cli_json(&root, &["audit", "status"]);
    assert_eq!(status["last_checkpoint"]["sequence"], head, "{status}");
    // The public key the server shows, the store holds and the witness saw.
    let public_key = status["public_key"].as_str().unwrap().to_owned();
    let printed = Command::new(BIN)
        .args(["audit", "public-key", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(printed.status.success(), "{printed:?}");
    assert_eq!(String::from_utf8_lossy(&printed.stdout).trim(), public_key);
    assert!(lines.iter().all(|l| l["public_key"] == public_key.as_str()));

    let verify = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["audit", "verify", "--json", "--data-dir"])
            .arg(&data)
            .args(extra)
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code(), report)
    };
    let witness_arg = witness.to_str().unwrap();
    let (code, report) = verify(&["--witness", witness_arg, "--public-key", &public_key]);
    assert_eq!(code, Some(0), "{report}");
    assert!(report["checkpoints"].as_u64().unwrap() >= 4, "{report}");

    // Stopped, then the tail after the first checkpoint is cut with its
    // checkpoints, and the head moved back to match.
    server.signal("TERM");
    assert!(server.wait(Duration::from_secs(10)).success());
    tamper(
        &data,
        &format!(
            "DELETE FROM audit_events WHERE seq > {first};\
             DELETE FROM audit_checkpoints WHERE seq > {first};\
             UPDATE audit_chain SET seq = {first}, \
               hash = (SELECT hash FROM audit_events WHERE seq = {first});"
        ),
    );
    let (code, report) = verify(&[]);
    assert_eq!(
        code,
        Some(0),
        "the store alone agrees with itself: {report}"
    );
    let (code, report) = verify(&["--witness", witness_arg]);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["first_bad"]["kind"], "truncated", "{report}");
    assert_eq!(report["first_bad"]["sequence"], first + 1, "{report}");

    // A witness file that is not one is an error, not a verdict.
    let junk = dir.path().join("junk.jsonl");
    std::fs::write(&junk, "not json\n").unwrap();
    let (code, _) = verify(&["--witness", junk.to_str().unwrap()]);
    assert_eq!(code, Some(2));
}

#[test]
fn an_export_verifies_on_its_own_and_a_changed_line_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let root = server.root_token().unwrap();
    let api = server.cli_json(
        &root,
        &["apis", "create", "--name", "Prices", "--prefix", "px"],
    );
    let api_id = api["id"].as_str().unwrap();
    let mut plaintexts = vec![root.clone()];
    for owner in ["acme", "globex", "initech"] {
        let issued = server.cli_json(
            &root,
            &[
                "keys", "create", "--api-id", api_id, "--env", "live", "--owner", owner,
            ],
        );
        plaintexts.push(issued["key"].as_str().unwrap().to_owned());
    }
    let head = server.cli_json(&root, &["audit", "status"])["head"]["sequence"]
        .as_u64()
        .unwrap();
    let out = server.cli(&root, &["audit", "export"], None);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, head);
    let first: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first["sequence"], 1);
    assert_eq!(first["prev_hash"], "0".repeat(64));
    assert_eq!(first["hash"].as_str().unwrap().len(), 64);
    // No secret travels in an export: no key's or token's plaintext.
    for plaintext in &plaintexts {
        assert!(!text.contains(plaintext.as_str()), "{text}");
    }

    let check = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        let out = Command::new(BIN)
            .args(["audit", "verify", "--json", "--export"])
            .arg(&path)
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code(), report)
    };
    let (code, report) = check("whole.jsonl", &text);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["events"], head);
    // From a sequence number on, as a SIEM that already holds the start.
    let out = server.cli(&root, &["audit", "export", "--since", "2"], None);
    let tail = String::from_utf8(out.stdout).unwrap();
    assert_eq!(tail.lines().count() as u64, head - 2);
    assert_eq!(check("tail.jsonl", &tail).0, Some(0));

    // A changed field, a line taken out, two lines swapped.
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let mut event: Value = serde_json::from_str(&edited[2]).unwrap();
    event["target"] = "someone_else".into();
    edited[2] = event.to_string();
    let (code, report) = check("edited.jsonl", &(edited.join("\n") + "\n"));
    assert_eq!(code, Some(1));
    assert_eq!(
        (
            report["first_bad"]["sequence"].as_u64(),
            report["first_bad"]["kind"].as_str()
        ),
        (Some(3), Some("edited")),
        "{report}"
    );
    let mut gapped: Vec<&str> = lines.clone();
    gapped.remove(3);
    let (code, report) = check("gapped.jsonl", &(gapped.join("\n") + "\n"));
    assert_eq!(code, Some(1));
    assert_eq!(report["first_bad"]["kind"], "deleted", "{report}");
    let mut swapped: Vec<&str> = lines.clone();
    swapped.swap(3, 4);
    let (code, report) = check("swapped.jsonl", &(swapped.join("\n") + "\n"));
    assert_eq!(code, Some(1), "{report}");
    let mut junk = lines.clone();
    junk[1] = "not an event";
    let (code, report) = check("junk.jsonl", &(junk.join("\n") + "\n"));
    assert_eq!(code, Some(1));
    assert_eq!(report["first_bad"]["sequence"], 2, "{report}");
}
