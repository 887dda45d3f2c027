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
