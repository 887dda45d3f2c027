//! `whosin join` / `whosin watch` as a user runs them: the `--json` line
//! contract, the exit codes, the IP lookup, and the watch screen.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};

/// A running `whosin join`/`watch` with its stdout lines.
struct Visitor {
    child: Child,
    lines: Receiver<String>,
}

impl Visitor {
    fn start(args: &[&str]) -> Visitor {
        let mut child = Command::new(bin())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn whosin");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Visitor { child, lines }
    }

    /// Reads JSON lines until one has `"event": event`.
    fn expect(&self, event: &str) -> Value {
        let until = std::time::Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {event:?} line in time"));
            let v: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if v["event"] == event {
                return v;
            }
        }
    }

    /// Reads text lines until one contains `text`.
    fn expect_text(&self, text: &str) {
        let until = std::time::Instant::now() + DEADLINE;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line with {text:?} in time"));
            if line.contains(text) {
                return;
            }
        }
    }

    fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        wait_exit(&mut self.child, DEADLINE).and_then(|s| s.code())
    }
}

impl Drop for Visitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_to_exit(args: &[&str]) -> i32 {
    let mut child = Command::new(bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_exit(&mut child, DEADLINE)
        .expect("exits by itself")
        .code()
        .expect("exit code")
}

#[test]
fn json_lines_contract() {
    let server = ServerProcess::start(&[]);
    let url = server.url();
    let auth = server.auth_url();
    let mut ann = Visitor::start(&[
        "join",
        "--json",
        "--url",
        &url,
        "--key",
        KEY,
        "--secret",
        SECRET,
        "--visitor-id",
        "ann",
        "--name",
        "Ann",
        "--ip",
        "192.0.2.1",
    ]);
    assert_eq!(ann.expect("state")["state"], "connecting");
    let connected = ann.expect("state");
    assert_eq!(connected["state"], "connected");
    let snap = ann.expect("snapshot");
    assert_eq!(snap["count"], 1);
    assert_eq!(snap["me"]["id"], "ann");
    assert_eq!(snap["me"]["info"]["name"], "Ann");
    assert_eq!(snap["me"]["info"]["ip"], "192.0.2.1");
    assert_eq!(snap["members"].as_array().unwrap().len(), 1);

    let mut bob = Visitor::start(&[
        "join",
        "--json",
        "--url",
        &url,
        "--key",
        KEY,
        "--auth-endpoint",
        &auth,
        "--visitor-id",
        "bob",
        "--name",
        "Bob",
        "--ip-lookup",
        "none",
    ]);
    let snap = bob.expect("snapshot");
    assert_eq!(snap["count"], 2);
    assert_eq!(
        snap["me"]["info"]["ip"], "127.0.0.1",
        "the server's auth endpoint records the observed IP"
    );
    let added = ann.expect("member_added");
    assert_eq!(added["count"], 2);
    assert_eq!(added["member"]["id"], "bob");
    assert_eq!(added["member"]["info"]["name"], "Bob");
    assert_eq!(bob.terminate(), Some(0), "interrupted is a normal end");
    let removed = ann.expect("member_removed");
    assert_eq!(removed["member"]["id"], "bob");
    assert_eq!(removed["count"], 1);
    assert_eq!(ann.terminate(), Some(0));
}

#[test]
fn exit_codes_say_what_went_wrong() {
    let server = ServerProcess::start(&[]);
    let url = server.url();
    let auth = server.auth_url();
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["join", "--url", &url, "--ip-lookup", "none"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let code =
        |args: Vec<String>| run_to_exit(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        code(base(&["--key", "nope", "--secret", SECRET])),
        4,
        "unknown key"
    );
    assert_eq!(
        code(base(&["--key", KEY, "--secret", "wrong"])),
        3,
        "bad signature"
    );
    assert_eq!(
        code(base(&[
            "--key",
            KEY,
            "--auth-endpoint",
            &auth,
            "--channel",
            "presence-other"
        ])),
        3,
        "auth endpoint 403"
    );
    assert_eq!(
        code(base(&["--key", KEY])),
        2,
        "presence without a way to sign"
    );
    assert_eq!(
        run_to_exit(&["join", "--url", "nonsense", "--key", KEY, "--secret", SECRET]),
        2,
        "bad URL"
    );
    assert_eq!(
        run_to_exit(&["join", "--key", KEY, "--bogus"]),
        2,
        "unknown flag"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert_eq!(
        run_to_exit(&[
            "join",
            "--url",
            &format!("ws://{closed}"),
            "--key",
            KEY,
            "--secret",
            SECRET,
            "--ip-lookup",
            "none"
        ]),
        5,
        "unreachable"
    );
}

#[test]
fn secret_mode_shows_the_looked_up_public_ip() {
    // A local stand-in for the public IP service.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut s in listener.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\n198.51.100.4",
            );
        }
    });
    let server = ServerProcess::start(&[]);
    let v = Visitor::start(&[
        "join",
        "--json",
        "--url",
        &server.url(),
        "--key",
        KEY,
        "--secret",
        SECRET,
        "--ip-lookup",
        &format!("http://{addr}/ip"),
    ]);
    assert_eq!(v.expect("public_ip")["ip"], "198.51.100.4");
    let snap = v.expect("snapshot");
    assert_eq!(snap["me"]["info"]["ip"], "198.51.100.4");
    assert!(
        snap["me"]["info"]["name"].as_str().unwrap().contains(' '),
        "a fake name by default"
    );
}

#[test]
fn watch_shows_the_list_and_the_count() {
    let server = ServerProcess::start(&[]);
    let url = server.url();
    let w = Visitor::start(&[
        "watch",
        "--url",
        &url,
        "--key",
        KEY,
        "--secret",
        SECRET,
        "--name",
        "Wendy",
        "--ip",
        "192.0.2.9",
        "--ip-lookup",
        "none",
    ]);
    w.expect_text("1 online");
    let _other = Visitor::start(&[
        "join",
        "--url",
        &url,
        "--key",
        KEY,
        "--secret",
        SECRET,
        "--name",
        "Otto",
        "--ip",
        "192.0.2.10",
    ]);
    w.expect_text("2 online");
    w.expect_text("Otto — 192.0.2.10");
}
