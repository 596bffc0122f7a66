//! A flood of unauthenticated idle connections that uses up the process's
//! file descriptors must not take verify and `/health` down for everyone.
//!
//! This test lowers the open-file limit of its own process, so it is the
//! only test of this binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A panic in a test is a failed test.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keyward_server::settings::LimitSettings;
use keyward_server::{Application, Settings};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;

/// Opens `n` connections to the port, sends each `GET /v1/keys` without a
/// token (a 401), and holds them all open until its standard input closes.
const FLOOD: &str = r#"
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
port, n = int(sys.argv[1]), int(sys.argv[2])
held = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /v1/keys HTTP/1.1\r\nHost: k\r\n\r\n")
    held.append(s)
print("open", flush=True)
sys.stdin.read()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_that_use_up_descriptors_do_not_stop_verify() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        // No cap per address and the default 30 s deadlines: what frees the
        // descriptors here is the server noticing it has none left.
        limits: LimitSettings {
            max_connections_per_ip: 0,
            ..LimitSettings::default()
        },
        ..Settings::default()
    };
    let mut app = Application::build(settings).await.unwrap();
    let root = app.take_root_token().unwrap().expose().to_owned();
    let addr = app.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let admin = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let call = |path: &str, body: serde_json::Value| {
        admin
            .post(format!("http://{addr}{path}"))
            .bearer_auth(&root)
            .json(&body)
            .send()
    };
    let api: serde_json::Value = call(
        "/v1/apis",
        json!({"name": "fd", "prefix": "fd", "environments": ["live"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let key: serde_json::Value = call(
        "/v1/keys",
        json!({"api_id": api["id"], "environment": "live", "owner": "acme"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let key = key["key"].as_str().unwrap().to_owned();

    // 300 descriptors for this process, the server's included; the flood
    // opens twice that.
    let lowered = Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg("--nofile=300:")
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(lowered.success());
    let mut flood = tokio::process::Command::new("python3")
        .args(["-c", FLOOD, &addr.port().to_string(), "600"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    let mut out = BufReader::new(flood.stdout.take().unwrap());
    let opened = out.read_line(&mut line);
    tokio::time::timeout(Duration::from_secs(60), opened)
        .await
        .expect("the flood opens its connections")
        .unwrap();
    assert_eq!(line.trim(), "open", "the flood holds its connections");

    // Another client is served within seconds, far sooner than the 30 s
    // deadlines would free anything.
    let body = json!({"key": key}).to_string();
    let verify = format!(
        "GET /health HTTP/1.1\r\nHost: k\r\n\r\n\
         POST /v1/keys/verify HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer {root}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    let answered = loop {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "verify and /health stayed out of reach"
        );
        if let Some(answer) = probe(addr, &verify).await {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    assert!(answered.contains("\"VALID\""), "{answered}");

    drop(flood.stdin.take());
    let _ = flood.kill().await;
}

/// Sends `requests` from 127.0.0.2 and returns the answers once both came,
/// or `None` when this process has no descriptor for the socket or the
/// server does not answer within a second.
async fn probe(addr: std::net::SocketAddr, requests: &str) -> Option<String> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind("127.0.0.2:0".parse().unwrap()).ok()?;
    let attempt = async {
        let mut stream = socket.connect(addr).await.ok()?;
        stream.write_all(requests.as_bytes()).await.ok()?;
        let mut read = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&read);
            if text.matches("HTTP/1.1 ").count() == 2 && text.contains("\"VALID\"") {
                return Some(text.into_owned());
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => read.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
}
