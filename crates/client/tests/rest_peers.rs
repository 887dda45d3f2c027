//! Watching through the REST API against a server nobody here wrote:
//! Sockudo. Runs when `WHOSIN_SOCKUDO_BIN` names its binary (as
//! `scripts/bench-peers` installs it: `cargo install sockudo`), and says it
//! was skipped otherwise: installing Sockudo takes 15–20 minutes on 2
//! cores, too long for CI. Against whosin itself the same watcher is tested
//! in CI (the desktop controller's tests).

use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use whosin_client::{
    Client, ConnectionState, Endpoint, LocalSigner, RestWatch, StopReason, UserData,
};

const CHANNEL: &str = "presence-whosin";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The peer server, killed when the test ends however it ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn until(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn visitor(ep: &Endpoint, id: &str) -> Client {
    let signer = LocalSigner::new("k", "s").with_user(UserData::new(id, json!({"name": id})));
    let (client, _events) = Client::builder(ep.clone()).authorizer(signer).connect();
    client.subscribe(CHANNEL);
    client
}

fn ids(c: &Client) -> Vec<String> {
    c.members(CHANNEL)
        .map(|(_, m)| m.into_iter().map(|m| m.id).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_presence_channel_on_sockudo_is_watched_through_its_rest_api() {
    let Some(bin) = std::env::var_os("WHOSIN_SOCKUDO_BIN") else {
        eprintln!("skipped: set WHOSIN_SOCKUDO_BIN to a sockudo binary to run this");
        return;
    };
    // The benchmark's configuration (app 1, key k, secret s), on free ports.
    let (port, metrics) = (free_port(), free_port());
    let config = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/peers/sockudo.json"),
    )
    .unwrap()
    .replace("7812", &port.to_string())
    .replace("9792", &metrics.to_string());
    let file = std::env::temp_dir().join(format!("whosin-sockudo-{}.json", std::process::id()));
    std::fs::write(&file, config).unwrap();
    let _peer = Peer(
        Command::new(bin)
            .arg("--config")
            .arg(&file)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "sockudo did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ep = Endpoint::parse(&format!("ws://127.0.0.1:{port}"), "k").unwrap();

    let (watcher, _events) = RestWatch::new(&ep, "1", "s")
        .unwrap()
        .interval(Duration::from_millis(200))
        .start();
    watcher.subscribe(CHANNEL);
    let (a, b) = (visitor(&ep, "a"), visitor(&ep, "b"));
    until("both visitors listed", || ids(&watcher) == ["a", "b"]).await;
    assert!(matches!(watcher.state(), ConnectionState::Connected { .. }));
    a.close();
    until("the first one gone", || ids(&watcher) == ["b"]).await;

    // A wrong secret: Sockudo refuses, and the watcher stops saying so.
    let (wrong, _e) = RestWatch::new(&ep, "1", "not-the-secret").unwrap().start();
    wrong.subscribe(CHANNEL);
    until("the wrong secret refused", || {
        matches!(
            wrong.state(),
            ConnectionState::Disconnected {
                reason: StopReason::RestRefused { .. }
            }
        )
    })
    .await;
    eprintln!("sockudo refused a wrong secret: {:?}", wrong.state());
    b.close();
    watcher.close();
    let _ = std::fs::remove_file(&file);
}
