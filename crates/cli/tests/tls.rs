//! TLS without a proxy, against `whosin serve` as a process: the test makes
//! its own CA and server certificates with the `openssl` command, then
//! checks `wss://` (both WebSocket paths), `https://` REST and the auth
//! endpoint, a certificate reload on SIGHUP that drops nobody, a failed
//! reload that keeps the old certificate, plain clients on the TLS port, a
//! silent connection, start errors that name the file, and a node joining a
//! TLS-only `redis-server` through `rediss://`.
//!
//! The `whosin join` children trust the test CA through `SSL_CERT_FILE`
//! (the client trusts the system's roots, which honour it); this process
//! never sets an environment variable (tests run on parallel threads).

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::rustls;

/// A CA and server certificates made by `openssl` in a temporary directory,
/// removed at the end.
struct Pki {
    dir: PathBuf,
}

/// A server certificate for 127.0.0.1 and localhost, signed by the test CA.
struct Leaf {
    cert: PathBuf,
    key: PathBuf,
    /// The certificate in DER, as a TLS client receives it.
    der: Vec<u8>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("whosin-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki { dir };
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=whosin test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        std::fs::write(
            pki.dir.join("leaf.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        pki
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A new key and certificate; `serial` tells leaves apart.
    fn leaf(&self, name: &str, serial: u32) -> Leaf {
        let (key, csr, cert, der) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.der"),
        );
        self.openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=localhost",
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &serial.to_string(),
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            &cert,
        ]);
        self.openssl(&["x509", "-in", &cert, "-outform", "DER", "-out", &der]);
        Leaf {
            cert: self.dir.join(cert),
            key: self.dir.join(key),
            der: std::fs::read(self.dir.join(der)).unwrap(),
        }
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("the openssl command is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `whosin serve` (the common test app on a free port of 127.0.0.1)
/// with `extra` arguments and `env`, its log in `log`; waits for
/// `listening on`.
fn serve(extra: &[&str], env: &[(&str, &Path)], log: &Path) -> ServerProcess {
    let mut cmd = Command::new(bin());
    cmd.args([
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
        SECRET,
    ])
    .args(extra)
    .env("WHOSIN_LOG", "info")
    .env_remove("SSL_CERT_DIR")
    .stdout(Stdio::piped())
    .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn whosin serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let line = rx.recv_timeout(DEADLINE).unwrap_or_else(|_| {
        panic!(
            "no `listening on` line; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    });
    let port = line
        .strip_prefix("listening on 127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    ServerProcess { child, port }
}

/// Starts a TLS server whose certificate and key are copied to
/// `server.pem`/`server.key` in the PKI directory (so a test can replace
/// them and send SIGHUP).
fn serve_tls(pki: &Pki, leaf: &Leaf) -> (ServerProcess, PathBuf) {
    let (cert, key) = (pki.dir.join("server.pem"), pki.dir.join("server.key"));
    std::fs::copy(&leaf.cert, &cert).unwrap();
    std::fs::copy(&leaf.key, &key).unwrap();
    let log = pki.dir.join("serve.log");
    let server = serve(
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
        &log,
    );
    (server, log)
}

fn signal(server: &ServerProcess, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &server.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// Waits until `f` is true, polling, or fails saying `what`.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let end = Instant::now() + DEADLINE;
    while !f().await {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An HTTPS client that trusts the test CA and reports the server's
/// certificate. A new one per call opens a new connection (a new
/// handshake).
fn https(ca: &Path) -> reqwest::Client {
    let root = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(root)
        .tls_info(true)
        .timeout(DEADLINE)
        .build()
        .unwrap()
}

/// The certificate a new connection to `port` is served (DER).
async fn served_certificate(port: u16, ca: &Path) -> Vec<u8> {
    let res = https(ca)
        .get(format!("https://127.0.0.1:{port}/health"))
        .send()
        .await
        .expect("/health over https");
    assert_eq!(res.status(), 200);
    res.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("the server's certificate")
        .to_vec()
}

/// A signed REST request over https; the status and body.
async fn rest(port: u16, ca: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let md5 = whosin_protocol::sign::body_md5(body.as_bytes());
    let mut params = vec![
        ("auth_key", KEY),
        ("auth_timestamp", ts.as_str()),
        ("auth_version", "1.0"),
    ];
    if !body.is_empty() {
        params.push(("body_md5", md5.as_str()));
    }
    let sig = whosin_protocol::sign::rest_signature(SECRET, method, path, params.iter().copied());
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let url = format!(
        "https://127.0.0.1:{port}{path}?{}&auth_signature={sig}",
        query.join("&")
    );
    let http = https(ca);
    let req = match method {
        "POST" => http
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_owned()),
        _ => http.get(url),
    };
    let res = req.send().await.expect("REST over https");
    (res.status().as_u16(), res.text().await.unwrap())
}

/// A `whosin join --json` visitor trusting the test CA, its output lines
/// gathered in the background.
struct Joiner {
    child: Child,
    lines: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Joiner {
    fn start(ca: &Path, url: &str, id: &str, auth: &[&str]) -> Joiner {
        let mut child = Command::new(bin())
            .args(["join", "--url", url, "--key", KEY, "--visitor-id", id])
            .args(["--name", id, "--json", "--ip-lookup", "none"])
            .args(auth)
            .env("SSL_CERT_FILE", ca)
            .env_remove("SSL_CERT_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn whosin join");
        let stdout = child.stdout.take().unwrap();
        let lines: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        Joiner { child, lines }
    }

    fn lines(&self) -> Vec<serde_json::Value> {
        self.lines.lock().unwrap().clone()
    }

    async fn wait_for(&self, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
        let end = Instant::now() + DEADLINE;
        while !self.lines().iter().any(&pred) {
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; output: {:#?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn sees_member(&self, id: &str) {
        self.wait_for(&format!("member {id}"), |v| {
            (v["event"] == "member_added" && v["member"]["id"] == id)
                || (v["event"] == "snapshot"
                    && v["members"]
                        .as_array()
                        .is_some_and(|m| m.iter().any(|m| m["id"] == id)))
        })
        .await;
    }

    /// How many times the connection was (re)opened.
    fn connections(&self) -> usize {
        self.lines()
            .iter()
            .filter(|v| v["event"] == "state" && v["state"] == "connected")
            .count()
    }
}

impl Drop for Joiner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_https_and_a_certificate_reload_that_drops_nobody() {
    let pki = Pki::new("reload");
    let ca = pki.ca();
    let (first, second) = (pki.leaf("first", 1001), pki.leaf("second", 1002));
    let (server, log) = serve_tls(&pki, &first);
    let port = server.port;
    let wss = format!("wss://127.0.0.1:{port}");
    let auth = format!("https://127.0.0.1:{port}/pusher/auth");

    // https: the page, REST and the auth endpoint, with the first certificate.
    assert_eq!(served_certificate(port, &ca).await, first.der);
    let page = https(&ca)
        .get(format!("https://localhost:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "the page over https, by name");
    let (status, body) = rest(port, &ca, "GET", &format!("/apps/{ID}/channels"), "").await;
    assert_eq!(status, 200, "{body}");
    let signed = https(&ca)
        .post(&auth)
        .form(&[
            ("socket_id", "1234.1234"),
            ("channel_name", CHANNEL),
            ("visitor_id", "probe"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
    let signed: serde_json::Value = serde_json::from_str(&signed.text().await.unwrap()).unwrap();
    assert!(
        signed["auth"].as_str().is_some_and(|a| a.starts_with(KEY)),
        "{signed}"
    );

    // wss: one visitor through the https auth endpoint, one signing itself.
    let ada = Joiner::start(&ca, &wss, "ada", &["--auth-endpoint", &auth]);
    ada.sees_member("ada").await;
    let bob = Joiner::start(&ca, &wss, "bob", &["--secret", SECRET]);
    bob.sees_member("ada").await;
    ada.sees_member("bob").await;

    // SIGHUP with a new certificate: new connections get it...
    std::fs::copy(&second.key, pki.dir.join("server.key")).unwrap();
    std::fs::copy(&second.cert, pki.dir.join("server.pem")).unwrap();
    signal(&server, "-HUP");
    until("the second certificate on new connections", || async {
        served_certificate(port, &ca).await == second.der
    })
    .await;
    // ...and the connections opened before it go on: ada hears a newcomer
    // (who connected with the new certificate) and a REST event.
    let cy = Joiner::start(&ca, &wss, "cy", &["--secret", SECRET]);
    cy.sees_member("ada").await;
    ada.sees_member("cy").await;
    let event = format!(r#"{{"name":"after-reload","channels":["{CHANNEL}"],"data":"{{}}"}}"#);
    let (status, body) = rest(port, &ca, "POST", &format!("/apps/{ID}/events"), &event).await;
    assert_eq!(status, 200, "{body}");
    ada.wait_for("the event sent after the reload", |v| {
        v["event"] == "message" && v["name"] == "after-reload"
    })
    .await;
    assert_eq!(ada.connections(), 1, "ada was never reconnected");
    assert_eq!(bob.connections(), 1, "bob was never reconnected");

    // A reload that fails (a half-written file) keeps the certificate in use.
    std::fs::write(
        pki.dir.join("server.pem"),
        "-----BEGIN CERTIFICATE-----\nMIIB\n",
    )
    .unwrap();
    signal(&server, "-HUP");
    let cert_file = pki.dir.join("server.pem").display().to_string();
    until("the failed reload in the log", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let found = text
            .lines()
            .any(|l| l.contains("not reloaded") && l.contains(&cert_file) && l.contains("ERROR"));
        async move { found }
    })
    .await;
    assert_eq!(served_certificate(port, &ca).await, second.der);
    assert_eq!(ada.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_websocket_paths_speak_tls() {
    let pki = Pki::new("paths");
    let ca = pki.ca();
    let leaf = pki.leaf("leaf", 7);
    let (server, _log) = serve_tls(&pki, &leaf);
    let mut roots = rustls::RootCertStore::empty();
    {
        use rustls::pki_types::pem::PemObject;
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_file(&ca).unwrap())
            .unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // `GET /app/...` takes the fast path; the absolute form of the same
    // target does not start with it and is served through hyper.
    for target in [
        format!("/app/{KEY}?protocol=7"),
        format!("http://127.0.0.1:{}/app/{KEY}?protocol=7", server.port),
    ] {
        let tcp = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        let mut got = Vec::new();
        let read = tokio::time::timeout(DEADLINE, async {
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&got).contains("connection_established") {
                let n = tls.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        let text = String::from_utf8_lossy(&got);
        assert!(read.is_ok(), "{target}: no connection_established: {text}");
        assert!(text.starts_with("HTTP/1.1 101"), "{target}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_clients_on_the_tls_port_fail_cleanly_and_the_server_goes_on() {
    let pki = Pki::new("plain");
    let ca = pki.ca();
    let leaf = pki.leaf("leaf", 9);
    let (server, _log) = serve_tls(&pki, &leaf);
    let port = server.port;

    // http:// gets a plain-text 400 that says what to use.
    let res = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/health"))
        .timeout(DEADLINE)
        .send()
        .await
        .expect("a plain answer");
    assert_eq!(res.status(), 400);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("https://") && body.contains("wss://"),
        "{body}"
    );

    // ws:// fails its handshake with the same answer.
    let url = format!("ws://127.0.0.1:{port}/app/{KEY}?protocol=7");
    match tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url)).await {
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(r))) => assert_eq!(r.status(), 400),
        other => panic!("expected an HTTP 400 refusal, got {other:?}"),
    }

    // A TLS client that does not trust the certificate fails its handshake.
    let e = reqwest::Client::new()
        .get(format!("https://127.0.0.1:{port}/health"))
        .timeout(DEADLINE)
        .send()
        .await
        .expect_err("an untrusted certificate");
    assert!(format!("{e:?}").contains("UnknownIssuer"), "{e:?}");

    // Garbage that starts like a TLS record: the handshake fails, closed.
    let mut raw = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    raw.write_all(&[0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5])
        .await
        .unwrap();
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, raw.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "a bad handshake is closed");

    // And the server goes on serving.
    assert_eq!(served_certificate(port, &ca).await, leaf.der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_says_hello_is_dropped_within_the_header_read_timeout() {
    /// The server's header read timeout (there is no flag for it).
    const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    let pki = Pki::new("silent");
    let leaf = pki.leaf("leaf", 11);
    let (server, _log) = serve_tls(&pki, &leaf);
    let start = Instant::now();
    let silent = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    // And one that starts a handshake record and stops.
    let mut halfway = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    halfway.write_all(&[0x16, 3, 1]).await.unwrap();
    for (what, mut conn) in [("silent", silent), ("half a hello", halfway)] {
        let mut buf = [0u8; 64];
        let end = tokio::time::timeout(
            HEADER_READ_TIMEOUT + Duration::from_secs(3),
            conn.read(&mut buf),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}: still open after {:?}", start.elapsed()));
        assert!(
            matches!(end, Ok(0) | Err(_)),
            "{what}: closed without an answer, got {end:?}"
        );
    }
    assert!(
        start.elapsed() >= HEADER_READ_TIMEOUT - Duration::from_secs(1),
        "dropped before the timeout: {:?}",
        start.elapsed()
    );
}

#[test]
fn unusable_certificate_files_stop_the_start_and_name_the_file() {
    let pki = Pki::new("errors");
    let (a, b) = (pki.leaf("a", 21), pki.leaf("b", 22));
    let garbage = pki.dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = pki.dir.join("missing.pem");
    let p = |p: &Path| p.to_str().unwrap().to_owned();
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            vec!["--tls-cert".into(), p(&a.cert)],
            vec!["--tls-key".into(), "neither".into()],
        ),
        (
            vec![
                "--tls-cert".into(),
                p(&missing),
                "--tls-key".into(),
                p(&a.key),
            ],
            vec![p(&missing), "cannot read".into()],
        ),
        (
            vec![
                "--tls-cert".into(),
                p(&garbage),
                "--tls-key".into(),
                p(&a.key),
            ],
            vec![p(&garbage), "holds no certificate".into()],
        ),
        (
            vec![
                "--tls-cert".into(),
                p(&a.cert),
                "--tls-key".into(),
                p(&a.cert),
            ],
            vec![p(&a.cert), "holds no private key".into()],
        ),
        (
            vec![
                "--tls-cert".into(),
                p(&a.cert),
                "--tls-key".into(),
                p(&b.key),
            ],
            vec![p(&a.cert), p(&b.key), "does not belong".into()],
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["serve", "--port", "0", "--app-id", ID, "--app-key", KEY];
        all.extend(["--app-secret", SECRET]);
        all.extend(args.iter().map(String::as_str));
        let out = run_bounded(&all, DEADLINE);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{args:?}: printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        for e in &expected {
            assert!(
                stderr.contains(e.as_str()),
                "{args:?}: {e:?} not in {stderr}"
            );
        }
    }
    // A key's contents never reach the error.
    let key_text = std::fs::read_to_string(&a.key).unwrap();
    let secret_line = key_text.lines().nth(1).unwrap();
    let args = [
        "serve",
        "--port",
        "0",
        "--tls-key",
        a.cert.to_str().unwrap(),
    ];
    let out = run_bounded(
        &[&args[..], &["--tls-cert", a.key.to_str().unwrap()]].concat(),
        DEADLINE,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains(secret_line), "{stderr}");
}

/// A `redis-server` listening with TLS only, on a free port.
struct TlsRedis {
    child: Child,
    port: u16,
}

impl TlsRedis {
    fn start(pki: &Pki, leaf: &Leaf) -> TlsRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--tls-auth-clients", "no"])
            .arg("--tls-cert-file")
            .arg(&leaf.cert)
            .arg("--tls-key-file")
            .arg(&leaf.key)
            .arg("--dir")
            .arg(&pki.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let mut redis = TlsRedis { child, port };
        let end = std::time::Instant::now() + DEADLINE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = redis.child.try_wait() {
                panic!("redis-server exited ({st}): built without TLS?");
            }
            assert!(
                std::time::Instant::now() < end,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_a_tls_only_redis_through_rediss() {
    let pki = Pki::new("rediss");
    let ca = pki.ca();
    let leaf = pki.leaf("redis", 31);
    let redis = TlsRedis::start(&pki, &leaf);
    let url = format!("rediss://127.0.0.1:{}", redis.port);

    // Without the CA trusted, the node does not start, and says why.
    let mut plain = Command::new(bin())
        .args(["serve", "--port", "0", "--app-id", ID, "--app-key", KEY])
        .args(["--app-secret", SECRET, "--redis-url", &url])
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut plain, DEADLINE).expect("the node gave up");
    let mut err = String::new();
    plain
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success());
    assert!(err.contains("SSL_CERT_FILE"), "{err}");

    // With it, two nodes share one roster through the TLS-only Redis.
    let nodes: Vec<ServerProcess> = ["n1", "n2"]
        .iter()
        .map(|id| {
            let log = pki.dir.join(format!("{id}.log"));
            serve(
                &["--redis-url", &url, "--node-id", id],
                &[("SSL_CERT_FILE", &ca)],
                &log,
            )
        })
        .collect();
    let (a, _alog) = visitor(&nodes[0].url(), "ada");
    let (b, _blog) = visitor(&nodes[1].url(), "bob");
    roster_becomes(&a, &["ada", "bob"]).await;
    roster_becomes(&b, &["ada", "bob"]).await;
    a.close();
    roster_becomes(&b, &["bob"]).await;
    b.close();
}
