//! No secret the operator gives reaches a log line or an error message:
//! `whosin serve` at debug level is fed the requests that make it talk
//! (a bad subscription signature, a bad REST signature, `/metrics` without
//! its token), and a Redis URL with a password it cannot use.

mod common;

use common::*;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use whosin_client::{Client, Endpoint, Event, LocalSigner, UserData};

const APP_SECRET: &str = "app-secret-never-logged-7f3a";
const METRICS_TOKEN: &str = "metrics-token-never-logged-91c2";
const REDIS_PASSWORD: &str = "redis-password-never-logged-5d8e";

fn get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_logs_and_errors() {
    let dir = std::env::temp_dir().join(format!("whosin-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("serve.log");
    let mut child = Command::new(bin())
        .args([
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--app-id",
            ID,
            "--app-key",
            KEY,
            "--app-secret",
            APP_SECRET,
            "--metrics-token",
            METRICS_TOKEN,
        ])
        .env("WHOSIN_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = Vec::new();
    let until = Instant::now() + DEADLINE;
    let mut byte = [0u8; 1];
    while !first.ends_with(b"\n") && Instant::now() < until {
        if stdout.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        first.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&first).to_string();
    let port: u16 = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));

    // A subscription signed with the wrong secret is refused (and logged).
    let endpoint = Endpoint::parse(&format!("ws://127.0.0.1:{port}"), KEY).unwrap();
    let signer = LocalSigner::new(KEY, "wrong-secret")
        .with_user(UserData::new("v1", serde_json::json!({"name": "V"})));
    let (client, events) = Client::builder(endpoint).authorizer(signer).connect();
    client.subscribe(CHANNEL);
    let log_events = Log::new(events);
    log_events
        .wait_for(0, "refusal", |e| {
            matches!(e, Event::SubscriptionFailed { .. })
        })
        .await;
    client.close();
    // A REST call with a bad signature, /metrics without its token.
    assert!(get(port, &format!("/apps/{ID}/channels?auth_key={KEY}&auth_timestamp=1&auth_version=1.0&auth_signature=00")).starts_with("HTTP/1.1 401"));
    assert!(get(port, "/metrics").starts_with("HTTP/1.1 401"));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    wait_exit(&mut child, DEADLINE);
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    let text = format!("{line}{rest}{}", std::fs::read_to_string(&log).unwrap());
    assert!(
        text.contains("refused") || text.contains("401"),
        "the server did log: {text}"
    );
    for secret in [APP_SECRET, METRICS_TOKEN] {
        assert!(
            !text.contains(secret),
            "{secret} appears in the output:\n{text}"
        );
    }

    // A Redis URL with a password, unreachable: the error names it redacted.
    let out = run_bounded(
        &[
            "serve",
            "--port",
            "0",
            "--app-id",
            ID,
            "--app-key",
            KEY,
            "--app-secret",
            APP_SECRET,
            "--redis-url",
            &format!("redis://:{REDIS_PASSWORD}@127.0.0.1:1"),
        ],
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(err.contains("redis://:***@127.0.0.1:1"), "{err}");
    assert!(
        !err.contains(REDIS_PASSWORD) && !err.contains(APP_SECRET),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
