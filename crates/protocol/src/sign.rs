//! Every HMAC of the protocol: channel auth, user sign-in, REST requests and
//! webhooks. Signatures are lower-case hex HMAC-SHA256; checks decode the hex
//! and compare in constant time (through `Mac::verify_slice`), so a forger
//! learns nothing from how long a refusal takes.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The auth string is not `key:hex`.
    #[error("auth must have the form 'key:signature'")]
    Malformed,
    /// The key part names another app.
    #[error("auth key does not match the app key")]
    WrongKey,
    /// The HMAC does not match.
    #[error("invalid signature")]
    Mismatch,
}

/// Lower-case hex HMAC-SHA256 of `message` under `secret`.
pub fn hmac_hex(secret: &str, message: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key size");
    mac.update(message);
    to_hex(&mac.finalize().into_bytes())
}

/// Whether two secrets are equal, in time that does not depend on where
/// they differ (only on their length), for tokens compared as they are.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a hex signature against `message` in constant time.
pub fn verify_hmac_hex(secret: &str, message: &[u8], signature_hex: &str) -> bool {
    let Some(sig) = from_hex(signature_hex) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key size");
    mac.update(message);
    mac.verify_slice(&sig).is_ok()
}

/// The string to sign for a channel subscription:
/// `socket_id:channel` or, for presence, `socket_id:channel:channel_data`.
pub fn channel_string_to_sign(
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// The `auth` value for a private or presence subscription: `key:hex`.
pub fn channel_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    let sig = hmac_hex(
        secret,
        channel_string_to_sign(socket_id, channel, channel_data).as_bytes(),
    );
    format!("{key}:{sig}")
}

/// Checks the `auth` value a client sent with a subscription.
pub fn verify_channel_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
    auth: &str,
) -> Result<(), SignatureError> {
    let (auth_key, sig) = auth.split_once(':').ok_or(SignatureError::Malformed)?;
    if auth_key != key {
        return Err(SignatureError::WrongKey);
    }
    let message = channel_string_to_sign(socket_id, channel, channel_data);
    if verify_hmac_hex(secret, message.as_bytes(), sig) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The `auth` value for `pusher:signin`: HMAC of `socket_id::user::user_data`.
pub fn signin_auth(key: &str, secret: &str, socket_id: &str, user_data: &str) -> String {
    let sig = hmac_hex(secret, format!("{socket_id}::user::{user_data}").as_bytes());
    format!("{key}:{sig}")
}

/// Checks a `pusher:signin` auth value.
pub fn verify_signin_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    user_data: &str,
    auth: &str,
) -> Result<(), SignatureError> {
    let (auth_key, sig) = auth.split_once(':').ok_or(SignatureError::Malformed)?;
    if auth_key != key {
        return Err(SignatureError::WrongKey);
    }
    let message = format!("{socket_id}::user::{user_data}");
    if verify_hmac_hex(secret, message.as_bytes(), sig) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Lower-case hex MD5 of a request body, as `body_md5` carries it.
pub fn body_md5(body: &[u8]) -> String {
    to_hex(&Md5::digest(body))
}

/// The signature of a webhook body, sent as `X-Pusher-Signature`.
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    hmac_hex(secret, body)
}

/// Checks a webhook's `X-Pusher-Signature` in constant time.
pub fn verify_webhook(secret: &str, body: &[u8], signature: &str) -> bool {
    verify_hmac_hex(secret, body, signature)
}

/// The string a REST request signs: `METHOD\nPATH\nsorted_query`, where the
/// query is every parameter but `auth_signature`, keys lower-cased, sorted by
/// key, `key=value` joined with `&`, values not escaped.
pub fn rest_string_to_sign<'a>(
    method: &str,
    path: &str,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut pairs: Vec<(String, &str)> = params
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .filter(|(k, _)| k != "auth_signature")
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!("{}\n{}\n{}", method.to_ascii_uppercase(), path, query)
}

/// Signs a REST request; the result goes in `auth_signature`.
pub fn rest_signature<'a>(
    secret: &str,
    method: &str,
    path: &str,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    hmac_hex(secret, rest_string_to_sign(method, path, params).as_bytes())
}

/// The query string of a signed REST request: `params` first (values that
/// need no escaping in a URL: keys, numbers, hex, `user_count`), then
/// `auth_key`, `auth_timestamp`, `auth_version=1.0` and `auth_signature`.
/// A request with a body passes its `body_md5` among `params`.
pub fn rest_query(
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    timestamp: u64,
) -> String {
    let timestamp = timestamp.to_string();
    let mut all = params.to_vec();
    all.extend([
        ("auth_key", key),
        ("auth_timestamp", timestamp.as_str()),
        ("auth_version", "1.0"),
    ]);
    let signature = rest_signature(secret, method, path, all.iter().copied());
    let mut query: Vec<String> = all.iter().map(|(k, v)| format!("{k}={v}")).collect();
    query.push(format!("auth_signature={signature}"));
    query.join("&")
}

/// Why a REST request's authentication was refused. Each maps to 401 except
/// where noted, and each message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestAuthError {
    /// A required query parameter is missing.
    #[error("missing query parameter {0}: sign requests with auth_key, auth_timestamp, auth_version and auth_signature")]
    Missing(&'static str),
    /// `auth_key` is not this app's key.
    #[error("unknown auth_key")]
    UnknownKey,
    /// `auth_version` is not `1.0`.
    #[error("auth_version must be 1.0")]
    Version,
    /// `auth_timestamp` is not a number or too far from the server's clock.
    #[error(
        "auth_timestamp is more than {tolerance} s from the server time {now}; check your clock"
    )]
    Timestamp {
        /// Server time, seconds since the epoch.
        now: u64,
        /// Allowed distance.
        tolerance: u64,
    },
    /// The body's MD5 does not match `body_md5`.
    #[error("body_md5 does not match the body")]
    BodyMd5,
    /// The signature does not match.
    #[error("invalid signature: you should have sent HmacSHA256Hex({expected:?}, your_secret)")]
    Signature {
        /// The string the server signed, so a client author can compare.
        expected: String,
    },
}

/// A REST request as the verifier needs it.
#[derive(Debug, Clone, Copy)]
pub struct RestRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path without the query, e.g. `/apps/3/events`.
    pub path: &'a str,
    /// Decoded query parameters.
    pub params: &'a [(String, String)],
    /// Raw body.
    pub body: &'a [u8],
}

/// Checks a REST request's key, version, timestamp (within `tolerance` s of
/// `now`), body MD5 (when there is a body) and signature.
pub fn verify_rest(
    key: &str,
    secret: &str,
    req: &RestRequest<'_>,
    now: u64,
    tolerance: u64,
) -> Result<(), RestAuthError> {
    let get = |name: &'static str| {
        req.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .ok_or(RestAuthError::Missing(name))
    };
    let auth_key = get("auth_key")?;
    let timestamp = get("auth_timestamp")?;
    let version = get("auth_version")?;
    let signature = get("auth_signature")?;
    if auth_key != key {
        return Err(RestAuthError::UnknownKey);
    }
    if version != "1.0" {
        return Err(RestAuthError::Version);
    }
    let ts: u64 = timestamp
        .parse()
        .map_err(|_| RestAuthError::Timestamp { now, tolerance })?;
    if ts.abs_diff(now) > tolerance {
        return Err(RestAuthError::Timestamp { now, tolerance });
    }
    if !req.body.is_empty() {
        let md5 = get("body_md5")?;
        if !md5.eq_ignore_ascii_case(&body_md5(req.body)) {
            return Err(RestAuthError::BodyMd5);
        }
    }
    let expected = rest_string_to_sign(
        req.method,
        req.path,
        req.params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    if verify_hmac_hex(secret, expected.as_bytes(), signature) {
        Ok(())
    } else {
        Err(RestAuthError::Signature { expected })
    }
}

/// Lower-case hex of bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Bytes of a hex string (either case); `None` when it is not hex.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    #[test]
    fn private_channel_vector() {
        assert_eq!(
            channel_auth(KEY, SECRET, "1234.1234", "private-foobar", None),
            format!("{KEY}:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4")
        );
    }

    #[test]
    fn presence_channel_vector() {
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        let auth = channel_auth(KEY, SECRET, "1234.1234", "presence-foobar", Some(data));
        assert_eq!(
            auth,
            format!("{KEY}:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80")
        );
        assert_eq!(
            verify_channel_auth(
                KEY,
                SECRET,
                "1234.1234",
                "presence-foobar",
                Some(data),
                &auth
            ),
            Ok(())
        );
    }

    #[test]
    fn signin_vector() {
        let auth = signin_auth(KEY, SECRET, "1234.1234", r#"{"id":"12345"}"#);
        assert_eq!(
            auth,
            format!("{KEY}:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba")
        );
        assert_eq!(
            verify_signin_auth(KEY, SECRET, "1234.1234", r#"{"id":"12345"}"#, &auth),
            Ok(())
        );
        assert_eq!(
            verify_signin_auth(KEY, SECRET, "1234.1235", r#"{"id":"12345"}"#, &auth),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn channel_auth_refusals() {
        let good = channel_auth(KEY, SECRET, "1.2", "private-a", None);
        let check = |auth: &str| verify_channel_auth(KEY, SECRET, "1.2", "private-a", None, auth);
        assert_eq!(check(&good), Ok(()));
        assert_eq!(
            check(&good.to_uppercase().replacen(&KEY.to_uppercase(), KEY, 1)),
            Ok(())
        );
        assert_eq!(check("nocolon"), Err(SignatureError::Malformed));
        assert_eq!(
            check(&good.replacen(KEY, "otherkey", 1)),
            Err(SignatureError::WrongKey)
        );
        assert_eq!(check(&format!("{KEY}:zz")), Err(SignatureError::Mismatch));
        assert_eq!(check(&format!("{KEY}:")), Err(SignatureError::Mismatch));
        let mut flipped = good.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        assert_eq!(check(&flipped), Err(SignatureError::Mismatch));
        // Signed for another socket or channel: refused.
        assert_eq!(
            verify_channel_auth(KEY, SECRET, "1.3", "private-a", None, &good),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_channel_auth(KEY, SECRET, "1.2", "private-b", None, &good),
            Err(SignatureError::Mismatch)
        );
    }

    /// The example request of Pusher's REST API documentation.
    #[test]
    fn rest_signature_vector() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let md5 = body_md5(body);
        assert_eq!(md5, "ec365a775a4cd0599faeb73354201b6f");
        let params = [
            ("auth_key", KEY),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", md5.as_str()),
        ];
        assert_eq!(
            rest_signature(SECRET, "POST", "/apps/3/events", params),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    /// The documentation's request again, as a query string, and read back
    /// by the verifier.
    #[test]
    fn rest_query_signs_the_documented_request() {
        let md5 = "ec365a775a4cd0599faeb73354201b6f";
        let q = rest_query(
            KEY,
            SECRET,
            "POST",
            "/apps/3/events",
            &[("body_md5", md5)],
            1353088179,
        );
        assert_eq!(
            q,
            format!("body_md5={md5}&auth_key={KEY}&auth_timestamp=1353088179&auth_version=1.0&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c")
        );
        let params: Vec<(String, String)> = rest_query(
            KEY,
            SECRET,
            "GET",
            "/apps/3/channels",
            &[("info", "user_count")],
            1000,
        )
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
        let request = RestRequest {
            method: "GET",
            path: "/apps/3/channels",
            params: &params,
            body: b"",
        };
        assert_eq!(verify_rest(KEY, SECRET, &request, 1000, 600), Ok(()));
    }

    fn signed_params(ts: &str, body: &[u8], extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut params: Vec<(String, String)> = vec![
            ("auth_key".into(), KEY.into()),
            ("auth_timestamp".into(), ts.into()),
            ("auth_version".into(), "1.0".into()),
        ];
        if !body.is_empty() {
            params.push(("body_md5".into(), body_md5(body)));
        }
        for (k, v) in extra {
            params.push(((*k).into(), (*v).into()));
        }
        let sig = rest_signature(
            SECRET,
            "GET",
            "/apps/3/channels",
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        params.push(("auth_signature".into(), sig));
        params
    }

    #[test]
    fn rest_verification() {
        let now = 1_700_000_000;
        let params = signed_params("1700000000", b"", &[("filter_by_prefix", "presence-")]);
        let req = RestRequest {
            method: "GET",
            path: "/apps/3/channels",
            params: &params,
            body: b"",
        };
        assert_eq!(verify_rest(KEY, SECRET, &req, now, 600), Ok(()));
        assert_eq!(verify_rest(KEY, SECRET, &req, now + 600, 600), Ok(()));
        assert!(matches!(
            verify_rest(KEY, SECRET, &req, now + 601, 600),
            Err(RestAuthError::Timestamp { .. })
        ));
        assert!(matches!(
            verify_rest(KEY, "wrong", &req, now, 600),
            Err(RestAuthError::Signature { .. })
        ));
        assert_eq!(
            verify_rest("otherkey", SECRET, &req, now, 600),
            Err(RestAuthError::UnknownKey)
        );
        // A parameter changed after signing.
        let mut tampered = params.clone();
        tampered[3].1 = "private-".into();
        let req2 = RestRequest {
            params: &tampered,
            ..req
        };
        assert!(matches!(
            verify_rest(KEY, SECRET, &req2, now, 600),
            Err(RestAuthError::Signature { .. })
        ));
        // Missing parameters are named.
        let missing: Vec<_> = params
            .iter()
            .filter(|(k, _)| k != "auth_timestamp")
            .cloned()
            .collect();
        let req3 = RestRequest {
            params: &missing,
            ..req
        };
        assert_eq!(
            verify_rest(KEY, SECRET, &req3, now, 600),
            Err(RestAuthError::Missing("auth_timestamp"))
        );
    }

    #[test]
    fn rest_body_md5_checked() {
        let now = 1_700_000_000;
        let body = br#"{"name":"e","channels":["a"],"data":"x"}"#;
        let params = signed_params("1700000000", body, &[]);
        let ok = RestRequest {
            method: "GET",
            path: "/apps/3/channels",
            params: &params,
            body,
        };
        assert_eq!(verify_rest(KEY, SECRET, &ok, now, 600), Ok(()));
        let other = RestRequest {
            body: br#"{"name":"f","channels":["a"],"data":"x"}"#,
            ..ok
        };
        assert_eq!(
            verify_rest(KEY, SECRET, &other, now, 600),
            Err(RestAuthError::BodyMd5)
        );
    }

    #[test]
    fn rest_string_sorts_and_lowercases() {
        let s = rest_string_to_sign(
            "post",
            "/apps/1/events",
            [("B", "2"), ("a", "1"), ("auth_signature", "x")],
        );
        assert_eq!(s, "POST\n/apps/1/events\na=1&b=2");
    }

    #[test]
    fn webhook_signatures() {
        let body = br#"{"time_ms":1,"events":[]}"#;
        let sig = webhook_signature(SECRET, body);
        assert!(verify_webhook(SECRET, body, &sig));
        assert!(!verify_webhook(SECRET, b"{}", &sig));
        assert!(!verify_webhook("other", body, &sig));
    }

    #[test]
    fn constant_time_equality() {
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"token", b"tokeN"));
        assert!(!constant_time_eq(b"token", b"token2"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(to_hex(&[0, 15, 16, 255]), "000f10ff");
        assert_eq!(from_hex("000F10ff"), Some(vec![0, 15, 16, 255]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
