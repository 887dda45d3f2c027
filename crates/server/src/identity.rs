//! Who a visitor is: a stable id, a display name, and the IP we observed.
//!
//! The tutorial gave each visit a random name; a product must keep it stable
//! per visitor (so tabs and reconnects do not rename people), so the fake
//! name is derived from the visitor id rather than drawn fresh.

use crate::config::IpNet;
use axum::http::HeaderMap;
use fake::faker::name::en::Name;
use fake::Fake;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// Longest display name accepted; longer ones are cut.
pub use whosin_protocol::limits::MAX_DISPLAY_NAME_CHARS as MAX_NAME_CHARS;
/// Longest visitor id accepted.
pub const MAX_VISITOR_ID_LEN: usize = 64;

/// Whether a client-chosen visitor id is acceptable: 1–64 characters of
/// `A-Za-z0-9_-`, so it is safe in logs, URLs and channel data.
pub fn is_valid_visitor_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_VISITOR_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A fresh random visitor id.
pub fn new_visitor_id() -> String {
    let mut rng = rand::rng();
    (0..16)
        .map(|_| rng.sample(rand::distr::Alphanumeric) as char)
        .collect()
}

/// What the message of a visitor token starts with, so that a token can
/// never be mistaken for any other signature made with the app secret.
const TOKEN_CONTEXT: &str = "whosin-visitor-id:";

/// The token that proves a client was given `visitor_id` by this app's
/// auth endpoint: an HMAC of the id under the app secret, so the server
/// can check it without storing anything.
pub fn visitor_token(secret: &str, visitor_id: &str) -> String {
    whosin_protocol::sign::hmac_hex(secret, format!("{TOKEN_CONTEXT}{visitor_id}").as_bytes())
}

/// Whether `token` is the visitor token of `visitor_id` (constant time).
pub fn verify_visitor_token(secret: &str, visitor_id: &str, token: &str) -> bool {
    whosin_protocol::sign::verify_hmac_hex(
        secret,
        format!("{TOKEN_CONTEXT}{visitor_id}").as_bytes(),
        token,
    )
}

/// A random-looking but stable fake name for a visitor id.
pub fn fake_name(visitor_id: &str) -> String {
    let digest = Sha256::digest(visitor_id.as_bytes());
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&digest[..8]);
    let mut rng = StdRng::seed_from_u64(u64::from_le_bytes(seed));
    Name().fake_with_rng(&mut rng)
}

/// Why a display name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("name must not contain control characters")]
pub struct BadName;

/// Cleans a client-chosen display name: trimmed, cut to
/// [`MAX_NAME_CHARS`]; `None` when blank (use the fake name).
pub fn clean_name(name: &str) -> Result<Option<String>, BadName> {
    let name = name.trim();
    if name.chars().any(char::is_control) {
        return Err(BadName);
    }
    if name.is_empty() {
        return Ok(None);
    }
    Ok(Some(name.chars().take(MAX_NAME_CHARS).collect()))
}

/// The client's address: the peer, or — only when the peer is a trusted
/// proxy (one of `trusted`, or any loopback address when `trust_loopback`)
/// — the right-most untrusted address of `X-Forwarded-For`.
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
    trust_loopback: bool,
) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted =
        |ip: IpAddr| (trust_loopback && ip.is_loopback()) || trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let chain: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .map(canonical)
        .collect();
    chain
        .iter()
        .rev()
        .copied()
        .find(|ip| !is_trusted(*ip))
        .or_else(|| chain.first().copied())
        .unwrap_or(peer)
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// An IP as shown to others, optionally with its host part hidden.
pub fn display_ip(ip: IpAddr, mask: bool) -> String {
    if !mask {
        return ip.to_string();
    }
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.*", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:*", s[0], s[1], s[2])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visitor_ids() {
        assert!(is_valid_visitor_id("abc-DEF_123"));
        assert!(!is_valid_visitor_id(""));
        assert!(!is_valid_visitor_id("a b"));
        assert!(!is_valid_visitor_id("<script>"));
        assert!(!is_valid_visitor_id(&"a".repeat(65)));
        let fresh = new_visitor_id();
        assert!(is_valid_visitor_id(&fresh));
        assert_ne!(fresh, new_visitor_id());
    }

    #[test]
    fn visitor_tokens_bind_the_id_to_the_secret() {
        let t = visitor_token("s3cret", "v1");
        assert_eq!(t.len(), 64);
        assert!(verify_visitor_token("s3cret", "v1", &t));
        assert!(!verify_visitor_token("s3cret", "v2", &t));
        assert!(!verify_visitor_token("other", "v1", &t));
        assert!(!verify_visitor_token("s3cret", "v1", &t[..63]));
        assert!(!verify_visitor_token("s3cret", "v1", "zz"));
        // Not the same as a plain HMAC of the id, which other signatures use.
        assert_ne!(t, whosin_protocol::sign::hmac_hex("s3cret", b"v1"));
    }

    #[test]
    fn fake_names_are_stable_per_visitor() {
        assert_eq!(fake_name("v1"), fake_name("v1"));
        let names: std::collections::HashSet<_> =
            (0..20).map(|i| fake_name(&format!("v{i}"))).collect();
        assert!(names.len() > 10, "{names:?}");
        assert!(fake_name("v1").contains(' '));
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("  Ann  "), Ok(Some("Ann".into())));
        assert_eq!(clean_name("   "), Ok(None));
        assert_eq!(clean_name("a\u{7}b"), Err(BadName));
        assert_eq!(
            clean_name(&"é".repeat(50))
                .unwrap()
                .unwrap()
                .chars()
                .count(),
            40
        );
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.7, 10.0.0.2".parse().unwrap());
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let trusted = [IpNet::parse("10.0.0.0/8").unwrap()];
        assert_eq!(
            client_ip(peer, &h, &trusted, false),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(peer, &h, &[], true), peer);
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(client_ip(local, &h, &[], false), local);
        // A proxy on this host: the right-most address it was not told to trust.
        assert_eq!(
            client_ip(local, &h, &[], true),
            "10.0.0.2".parse::<IpAddr>().unwrap()
        );
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(mapped, &HeaderMap::new(), &[], true).to_string(),
            "127.0.0.1"
        );
    }

    #[test]
    fn masking() {
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(display_ip(ip, false), "203.0.113.7");
        assert_eq!(display_ip(ip, true), "203.0.113.*");
        let v6: IpAddr = "2001:db8:1:2::5".parse().unwrap();
        assert_eq!(display_ip(v6, true), "2001:db8:1:*");
    }
}
