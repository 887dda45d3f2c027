//! Encoding a presence roster into `subscription_succeeded`.
//!
//! A joiner receives everyone present in one frame whose `data` is a JSON
//! *string* (Pusher double-encodes it). Encoding every member and then
//! escaping the whole roster again per joiner is the most expensive thing a
//! presence server does at scale, so each member's entry can be escaped once
//! ([`EscapedMember`], kept by the server while the member is present) and a
//! roster frame becomes a concatenation. Who is present is decided in
//! [`crate::presence`]; this module only encodes.

/// One member's `"id":info` entry, escaped as it stands inside the `data`
/// string of `subscription_succeeded`; its first `id_len` bytes are the
/// member's entry in `ids`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscapedMember {
    escaped: Box<str>,
    id_len: usize,
}

impl EscapedMember {
    /// Escapes a member's entry once.
    pub fn new(user_id: &str, info: &str) -> EscapedMember {
        let (escaped, id_len) = escaped_entry(user_id, info);
        EscapedMember {
            escaped: escaped.into_boxed_str(),
            id_len,
        }
    }
}

/// The whole `pusher_internal:subscription_succeeded` frame for `channel`
/// from entries escaped beforehand: the same text as
/// `server::subscription_succeeded(channel, Some(&presence_json(..)))`.
/// `members` is walked twice (ids, then hash), so it must yield the same
/// order both times.
pub fn subscription_succeeded_escaped<'a, I>(channel: &str, members: impl Fn() -> I) -> String
where
    I: Iterator<Item = &'a EscapedMember>,
{
    escaped_presence_frame(channel, || members().map(|m| (&*m.escaped, m.id_len)))
}

/// The `subscription_succeeded` presence JSON for `(user_id, user_info JSON)`
/// pairs, e.g. a cluster-wide roster read from Redis.
pub fn presence_json<'a>(members: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut ids = String::from("[");
    let mut hash = String::from("{");
    let mut count = 0usize;
    for (id, info) in members {
        if count > 0 {
            ids.push(',');
            hash.push(',');
        }
        count += 1;
        let quoted = json_string(id);
        ids.push_str(&quoted);
        hash.push_str(&quoted);
        hash.push(':');
        hash.push_str(info);
    }
    ids.push(']');
    hash.push('}');
    format!(r#"{{"presence":{{"ids":{ids},"hash":{hash},"count":{count}}}}}"#)
}

/// The `subscription_succeeded` frame for `(user_id, user_info JSON)`
/// pairs, e.g. a cluster-wide roster read from Redis: each entry escaped
/// once, in one pass, the same text as encoding [`presence_json`] and
/// escaping it.
pub fn subscription_succeeded_for<'a>(
    channel: &str,
    members: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let entries: Vec<(String, usize)> = members
        .into_iter()
        .map(|(id, info)| escaped_entry(id, info))
        .collect();
    escaped_presence_frame(channel, || entries.iter().map(|(e, n)| (e.as_str(), *n)))
}

/// A member's `"id":info` entry escaped as the contents of a JSON string,
/// and the length of its `"id"` part (the member's entry in `ids`).
fn escaped_entry(user_id: &str, info: &str) -> (String, usize) {
    let mut escaped = String::new();
    escape_json_text(&mut escaped, &json_string(user_id));
    let id_len = escaped.len();
    escaped.push(':');
    escape_json_text(&mut escaped, info);
    (escaped, id_len)
}

/// Assembles a presence `subscription_succeeded` frame from escaped
/// entries; `entries` is walked twice (ids, then hash) in the same order.
fn escaped_presence_frame<'a, I>(channel: &str, entries: impl Fn() -> I) -> String
where
    I: Iterator<Item = (&'a str, usize)>,
{
    let (mut size, mut count) = (80, 0);
    for (e, id_len) in entries() {
        size += e.len() + id_len + 2;
        count += 1;
    }
    let mut data = String::with_capacity(size);
    data.push_str(r#""{\"presence\":{\"ids\":["#);
    for (i, (e, id_len)) in entries().enumerate() {
        if i > 0 {
            data.push(',');
        }
        data.push_str(&e[..id_len]);
    }
    data.push_str(r#"],\"hash\":{"#);
    for (i, (e, _)) in entries().enumerate() {
        if i > 0 {
            data.push(',');
        }
        data.push_str(e);
    }
    data.push_str(&format!(r#"}},\"count\":{count}}}}}""#));
    crate::frame::server::subscription_succeeded_quoted(channel, &data)
}

/// A string as a JSON string literal.
pub(crate) fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("strings always serialize")
}

/// Appends `s` escaped as the contents of a JSON string, exactly as
/// serde_json escapes: `"` and `\`, the short forms `\b \f \n \r \t`, and
/// `\u00xx` for other control characters; everything else as is.
pub(crate) fn escape_json_text(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0C => "\\f",
            0x00..=0x1F => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if short.is_empty() {
            out.push_str(&format!("\\u{:04x}", b));
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::server;

    #[test]
    fn frames_from_escaped_members_are_the_encoded_frame() {
        let ids = [
            "plain",
            "with \"quotes\"",
            "back\\slash",
            "tab\tnew\nline",
            "ctl\u{1}\u{1f}",
            "é ü 日本",
            "sl/ash",
            "del\u{7f}",
        ];
        let infos = [
            r#"{"name":"Ada"}"#,
            r#"{"name":"a \"b\" c","ip":"203.0.113.7"}"#,
            r#"{"path":"C:\\x","nl":"a\nb","u":"\u0001"}"#,
            r#"{"name":"日本","nested":{"k":[1,2,{"z":null}]}}"#,
            "null",
        ];
        let mut members: Vec<(String, String)> = Vec::new();
        for n in 0..=ids.len() {
            let pairs = || members.iter().map(|(a, b)| (a.as_str(), b.as_str()));
            let escaped: Vec<EscapedMember> =
                pairs().map(|(u, i)| EscapedMember::new(u, i)).collect();
            for ch in ["presence-x", "presence-\"odd\""] {
                let want = server::subscription_succeeded(ch, Some(&presence_json(pairs())));
                assert_eq!(
                    subscription_succeeded_escaped(ch, || escaped.iter()),
                    want,
                    "{n} members"
                );
                assert_eq!(subscription_succeeded_for(ch, pairs()), want, "{n} members");
            }
            if let Some(id) = ids.get(n) {
                members.push((id.to_string(), infos[n % infos.len()].to_owned()));
            }
        }
    }

    #[test]
    fn escaping_matches_serde_json_for_every_ascii_byte() {
        let all: String = (0u8..128).map(char::from).collect();
        let mut out = String::new();
        escape_json_text(&mut out, &all);
        let serde = json_string(&all);
        assert_eq!(format!("\"{out}\""), serde);
    }

    #[test]
    fn presence_json_shape() {
        let json = presence_json([("x\"y", "null")]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["presence"]["count"], 1);
        assert_eq!(v["presence"]["ids"][0], "x\"y");
        assert!(v["presence"]["hash"]["x\"y"].is_null());
        assert_eq!(
            presence_json([]),
            r#"{"presence":{"ids":[],"hash":{},"count":0}}"#
        );
    }
}
