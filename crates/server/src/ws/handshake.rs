//! The HTTP side of opening a WebSocket (RFC 6455 section 4.2).
//!
//! Checked by hand rather than through a framework extractor so that the
//! upgraded socket is ours: the connection task then owns a plain
//! `TcpStream` and its buffers (see [`super::Socket`]).

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};

/// Why an upgrade request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Not a GET.
    #[error("a WebSocket connection is opened with GET")]
    Method,
    /// No `Upgrade: websocket` / `Connection: upgrade`.
    #[error("this path speaks the Pusher protocol over WebSocket: connect with a WebSocket (Pusher) client")]
    NotUpgrade,
    /// `Sec-WebSocket-Version` missing or not 13.
    #[error("unsupported WebSocket version: only 13 (RFC 6455) is spoken")]
    Version,
    /// `Sec-WebSocket-Key` missing or not 16 bytes of base64.
    #[error("Sec-WebSocket-Key must be 16 bytes in base64")]
    Key,
}

impl HandshakeError {
    /// The HTTP status to refuse with.
    pub fn status(&self) -> StatusCode {
        match self {
            HandshakeError::Method => StatusCode::METHOD_NOT_ALLOWED,
            HandshakeError::NotUpgrade => StatusCode::UPGRADE_REQUIRED,
            HandshakeError::Version => StatusCode::UPGRADE_REQUIRED,
            HandshakeError::Key => StatusCode::BAD_REQUEST,
        }
    }
}

/// Checks an upgrade request and returns the `Sec-WebSocket-Accept` value.
pub fn accept(method: &Method, headers: &HeaderMap) -> Result<HeaderValue, HandshakeError> {
    if method != Method::GET {
        return Err(HandshakeError::Method);
    }
    if !has_token(headers, header::UPGRADE, "websocket")
        || !has_token(headers, header::CONNECTION, "upgrade")
    {
        return Err(HandshakeError::NotUpgrade);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes().trim_ascii() != b"13")
    {
        return Err(HandshakeError::Version);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|v| v.as_bytes().trim_ascii())
        .filter(|k| is_nonce(k))
        .ok_or(HandshakeError::Key)?;
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key);
    HeaderValue::from_str(&accept).map_err(|_| HandshakeError::Key)
}

/// An upgrade request read straight from the socket (the fast path that
/// skips the HTTP stack for `GET /app/...`).
#[derive(Debug)]
pub struct UpgradeRequest {
    /// The request target, path and query.
    pub target: String,
    /// The headers.
    pub headers: HeaderMap,
    /// Bytes the request head took; what follows belongs to the WebSocket.
    pub head_len: usize,
}

/// Why a request head cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Not valid HTTP/1.1.
    #[error("malformed HTTP request")]
    Malformed,
    /// More headers than any WebSocket client sends.
    #[error("too many request headers")]
    TooManyHeaders,
}

/// Parses a request head from `buf`; `Ok(None)` until it is complete.
pub fn parse_head(buf: &[u8]) -> Result<Option<UpgradeRequest>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut slots);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(_) => return Err(HeadError::Malformed),
    };
    if req.method != Some("GET") || req.version != Some(1) {
        return Err(HeadError::Malformed);
    }
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name =
            header::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| HeadError::Malformed)?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| HeadError::Malformed)?;
        headers.append(name, value);
    }
    Ok(Some(UpgradeRequest {
        target: req.path.unwrap_or("/").to_owned(),
        headers,
        head_len,
    }))
}

/// The app key and the `protocol` query parameter of `/app/{key}?...`;
/// `None` for any other path.
pub fn app_target(target: &str) -> Option<(&str, Option<&str>)> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let key = path.strip_prefix("/app/")?;
    if key.is_empty() || key.contains('/') {
        return None;
    }
    let protocol = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("protocol="));
    Some((key, protocol))
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Whether `key` is the base64 form of 16 bytes: 22 characters, the last of
/// which carries only 2 bits, then `==`.
fn is_nonce(key: &[u8]) -> bool {
    let b64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    key.len() == 24
        && key[..22].iter().all(b64)
        && matches!(key[21], b'A' | b'Q' | b'g' | b'w')
        && &key[22..] == b"=="
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    const GOOD: &[(&str, &str)] = &[
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn request_heads_are_parsed_when_complete() {
        let head = b"GET /app/k?protocol=7&client=js HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n\x81";
        let n = head.len() - 1;
        for cut in [0, 10, n - 1] {
            assert!(parse_head(&head[..cut]).unwrap().is_none(), "cut {cut}");
        }
        let req = parse_head(head).unwrap().unwrap();
        assert_eq!(req.head_len, n);
        assert_eq!(req.target, "/app/k?protocol=7&client=js");
        assert!(accept(&Method::GET, &req.headers).is_ok());
        assert_eq!(app_target(&req.target), Some(("k", Some("7"))));
    }

    #[test]
    fn bad_heads_and_targets() {
        assert_eq!(
            parse_head(b"GET /app/k HTTP/1.0\r\n\r\n").unwrap_err(),
            HeadError::Malformed
        );
        assert_eq!(
            parse_head(b"GET /app/k HTTP/1.1\r\nBad Header\r\n\r\n").unwrap_err(),
            HeadError::Malformed
        );
        let many: String = (0..100).map(|i| format!("X-{i}: {i}\r\n")).collect();
        let head = format!("GET /app/k HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            parse_head(head.as_bytes()).unwrap_err(),
            HeadError::TooManyHeaders
        );
        assert_eq!(app_target("/app/k"), Some(("k", None)));
        assert_eq!(app_target("/app/"), None);
        assert_eq!(app_target("/app/k/extra"), None);
        assert_eq!(app_target("/apps/1/events"), None);
    }

    #[test]
    fn rfc_example_key() {
        // RFC 6455 section 1.3.
        let v = accept(&Method::GET, &request(GOOD)).unwrap();
        assert_eq!(v, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn tokens_are_case_insensitive_and_listed() {
        let h = request(&[
            ("upgrade", "WebSocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "AQIDBAUGBwgJCgsMDQ4PEA=="),
        ]);
        assert!(accept(&Method::GET, &h).is_ok());
    }

    #[test]
    fn refusals() {
        let without = |name: &str| -> HeaderMap {
            request(
                &GOOD
                    .iter()
                    .copied()
                    .filter(|(k, _)| *k != name)
                    .collect::<Vec<_>>(),
            )
        };
        let with = |name: &'static str, value: &'static str| -> HeaderMap {
            let mut h = without(name);
            h.insert(name, HeaderValue::from_static(value));
            h
        };
        assert_eq!(
            accept(&Method::POST, &request(GOOD)),
            Err(HandshakeError::Method)
        );
        assert_eq!(
            accept(&Method::GET, &without("upgrade")),
            Err(HandshakeError::NotUpgrade)
        );
        assert_eq!(
            accept(&Method::GET, &with("connection", "keep-alive")),
            Err(HandshakeError::NotUpgrade)
        );
        assert_eq!(
            accept(&Method::GET, &without("sec-websocket-version")),
            Err(HandshakeError::Version)
        );
        assert_eq!(
            accept(&Method::GET, &with("sec-websocket-version", "12")),
            Err(HandshakeError::Version)
        );
        for key in [
            "",
            "%%% not base64 %%%",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25jZR==",
            "dGhlIHNhbXBsZSBub25jZQ===",
            "dGhlIHNhbXBsZSBub25j",
        ] {
            let mut h = without("sec-websocket-key");
            h.insert("sec-websocket-key", HeaderValue::from_str(key).unwrap());
            assert_eq!(
                accept(&Method::GET, &h),
                Err(HandshakeError::Key),
                "{key:?}"
            );
        }
        assert_eq!(
            accept(&Method::GET, &without("sec-websocket-key")),
            Err(HandshakeError::Key)
        );
    }
}
