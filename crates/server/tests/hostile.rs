//! Hostile input. Two well-behaved observers sit in `presence-calm` (and
//! `private-calm`) while several attacking connections throw thousands of
//! deterministic pseudo-random junk frames at the server: invalid, truncated
//! and mistyped JSON, depth bombs, unknown and spoofed events, forged and
//! replayed subscriptions, stray client events, binary frames, invalid
//! UTF-8, WebSocket control and protocol violations, payloads over the size
//! limit. Raw TCP connections abuse the HTTP upgrade alongside.
//!
//! Afterwards the server must still serve, the observers must have noticed
//! nothing, and the junk must show up in `malformed_frames` (so the test
//! fails if the frames were never parsed).
//!
//! Every burst of junk ends with a barrier: a subscribe to a fresh public
//! channel. Its `subscription_succeeded` proves that everything before it was
//! processed, so the test counts exactly without sleeping.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data as OpData, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::{Bytes, Message};
use whosin_protocol::frame::ServerFrame;
use whosin_protocol::sign;

const CALM: &str = "presence-calm";
const PRIVATE: &str = "private-calm";
/// A presence channel the attackers may join legitimately among themselves.
const ARENA: &str = "presence-arena";
const ATTACKERS: u64 = 4;
/// Junk items per attacker (an item is one frame, two for a few violations).
const ITEMS_PER_ATTACKER: usize = 1200;
const MAX_BURST: usize = 32;
/// The whole test, on a slow machine in a debug build.
const BUDGET: Duration = Duration::from_secs(25);
const MAX_MESSAGE: usize = 64 * 1024;
const GOOD_KEY: &str =
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// xorshift64: tiny, deterministic, good enough to pick junk.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // One splitmix step so nearby seeds start far apart; never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())].clone()
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn hex(&mut self, n: usize) -> String {
        sign::to_hex(&self.bytes(n))
    }

    /// Lower-case letters and digits.
    fn ident(&mut self, n: usize) -> String {
        const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..n).map(|_| A[self.below(A.len())] as char).collect()
    }

    /// Random valid UTF-8: JSON punctuation, controls, ASCII, multi-byte.
    fn text(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| match self.below(6) {
                0 => self.pick(&['{', '}', '[', ']', '"', ':', ',', '\\', ' ', '\n']),
                1 => char::from(self.below(32) as u8),
                2 | 3 => char::from(32 + self.below(95) as u8),
                _ => char::from_u32(0x80 + self.below(0x10_0000) as u32).unwrap_or('\u{fffd}'),
            })
            .collect()
    }
}

/// What the server must do with a junk item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Count it in `malformed_frames` and answer with `pusher:error`.
    Malformed,
    /// A well-formed protocol frame, possibly refused; not counted.
    Parsed,
    /// A `pusher:ping` with odd extras: exactly one `pusher:pong`.
    Pong,
    /// A WebSocket ping or pong: nothing at the protocol level.
    Control,
    /// Breaks the WebSocket layer or the size limit: the server may close.
    Fatal,
}

struct Junk {
    kind: &'static str,
    expect: Expect,
    msgs: Vec<Message>,
}

fn text(s: impl Into<String>) -> Message {
    Message::Text(s.into().into())
}

fn one(kind: &'static str, expect: Expect, msg: Message) -> Junk {
    Junk {
        kind,
        expect,
        msgs: vec![msg],
    }
}

/// What the attackers know about the observers, as if they had sniffed
/// alice's subscribe frames: enough to try replaying them.
#[derive(Debug, Clone)]
struct Sniffed {
    alice_presence_auth: String,
    alice_data: String,
    alice_private_auth: String,
}

/// One junk item, chosen by `rng` alone (the socket id only fills in
/// signatures), so every run throws the same sequence.
fn junk(rng: &mut Rng, sniffed: &Sniffed, me: &str, attacker: u64) -> Junk {
    match rng.below(100) {
        0..=11 => invalid_json(rng),
        12..=19 => truncated(rng, sniffed),
        20..=29 => wrong_types(rng),
        30..=33 => not_objects(rng),
        34..=35 => depth_bomb(rng),
        36..=45 => unknown_event(rng),
        46..=61 => bad_subscribe(rng, sniffed, me, attacker),
        62..=66 => stray_client_event(rng),
        67..=72 => stray_unsubscribe(rng),
        73..=76 => forged_signin(rng, me),
        77..=82 => binary(rng),
        83..=88 => random_text(rng),
        89..=92 => ws_control(rng),
        93..=94 => odd_ping(rng),
        95..=97 => big(rng),
        _ => protocol_violation(rng),
    }
}

fn invalid_json(rng: &mut Rng) -> Junk {
    let s = rng.pick(&[
        "{",
        "}",
        "{\"event\":",
        "{\"event\":\"pusher:subscribe\",",
        "{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":\"presence-calm\"}",
        "{'event':'pusher:subscribe','data':{'channel':'presence-calm'}}",
        "{event:\"pusher:ping\"}",
        "{\"event\":\"client-x\",}",
        "{\"event\":\"pusher:ping\"}}",
        "{\"event\":\"pusher:ping\"} {\"event\":\"pusher:ping\"}",
        "{\"event\":\"pusher:ping\",\"data\":{}}\u{0}",
        "\u{feff}{\"event\":\"pusher:ping\"}",
        "",
        " ",
        "\n\t\r",
        "NaN",
        "undefined",
        "{\"event\":\"\\u12\"}",
        "{\"event\":\"\\ud800\"}",
        "{\"event\":\"pusher:ping\",\"data\":{}",
        "{\"event\":\"pusher:ping\" \"data\":{}}",
        "{\"event\":\"pusher:ping\",\"data\":01}",
    ]);
    one("invalid json", Expect::Malformed, text(s))
}

fn truncated(rng: &mut Rng, sniffed: &Sniffed) -> Junk {
    let templates = [
        json!({"event":"pusher:subscribe","data":{"channel":CALM,
            "auth":sniffed.alice_presence_auth,"channel_data":sniffed.alice_data}}),
        json!({"event":"client-typing","channel":PRIVATE,"data":{"text":"hello"}}),
        json!({"event":"pusher:unsubscribe","data":{"channel":CALM}}),
        json!({"event":"pusher:signin","data":{"auth":"k:s","user_data":"{\"id\":\"alice\"}"}}),
        json!({"event":"pusher:ping","data":{}}),
    ];
    let full = rng.pick(&templates).to_string();
    // Every template is ASCII, and a strict prefix of an object never parses.
    let cut = rng.below(full.len());
    one("truncated json", Expect::Malformed, text(&full[..cut]))
}

fn wrong_types(rng: &mut Rng) -> Junk {
    let s = rng.pick(&[
        r#"{"event":1}"#,
        r#"{"event":null}"#,
        r#"{"event":true}"#,
        r#"{"event":["pusher:ping"]}"#,
        r#"{"event":{"name":"pusher:ping"}}"#,
        r#"{"data":{}}"#,
        r#"{}"#,
        r#"{"event":"pusher:subscribe"}"#,
        r#"{"event":"pusher:subscribe","data":5}"#,
        r#"{"event":"pusher:subscribe","data":null}"#,
        r#"{"event":"pusher:subscribe","data":[]}"#,
        r#"{"event":"pusher:subscribe","data":"not json"}"#,
        r#"{"event":"pusher:subscribe","data":"5"}"#,
        r#"{"event":"pusher:subscribe","data":{}}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":5}}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":null}}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":["presence-calm"]}}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":"presence-calm","auth":7}}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":"presence-calm","auth":"x","channel_data":{"user_id":"alice"}}}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":"presence-calm","auth":"x","channel_data":42}}"#,
        r#"{"event":"pusher:subscribe","event":"pusher:ping"}"#,
        r#"{"event":"pusher:unsubscribe"}"#,
        r#"{"event":"pusher:unsubscribe","data":7}"#,
        r#"{"event":"pusher:unsubscribe","data":{"channel":false}}"#,
        r#"{"event":"pusher:signin","data":{}}"#,
        r#"{"event":"pusher:signin","data":{"auth":1,"user_data":"{}"}}"#,
        r#"{"event":"pusher:signin","data":{"auth":"a","user_data":{"id":"alice"}}}"#,
        r#"{"event":"client-x"}"#,
        r#"{"event":"client-x","channel":5}"#,
        r#"{"event":"client-x","channel":null,"data":{}}"#,
        r#"{"event":"client-x","channel":["private-calm"]}"#,
        r#"{"event":"x","channel":{}}"#,
    ]);
    one("wrong types", Expect::Malformed, text(s))
}

fn not_objects(rng: &mut Rng) -> Junk {
    let s = rng.pick(&[
        "[]",
        "[1,2,3]",
        r#"[{"event":"pusher:ping"}]"#,
        "null",
        "true",
        "0",
        "-1e999",
        r#""pusher:ping""#,
        r#""{\"event\":\"pusher:ping\"}""#,
    ]);
    one("array/null/scalar", Expect::Malformed, text(s))
}

fn depth_bomb(rng: &mut Rng) -> Junk {
    let open = |n: usize| "[".repeat(n);
    let close = |n: usize| "]".repeat(n);
    match rng.below(7) {
        0 => one("depth bomb", Expect::Malformed, text(open(10_000))),
        1 => one(
            "depth bomb",
            Expect::Malformed,
            text(format!("{}{}", open(10_000), close(10_000))),
        ),
        2 => one(
            "depth bomb",
            Expect::Malformed,
            text("{\"a\":".repeat(10_000)),
        ),
        3 => one(
            "depth bomb",
            Expect::Malformed,
            text(format!(
                r#"{{"event":"pusher:subscribe","data":{}"#,
                open(10_000)
            )),
        ),
        4 => one(
            "depth bomb",
            Expect::Malformed,
            text(format!(
                r#"{{"event":"pusher:subscribe","data":"{}"}}"#,
                open(10_000)
            )),
        ),
        // Past serde_json's recursion limit inside a field it parses.
        5 => one(
            "depth bomb",
            Expect::Malformed,
            text(format!(
                r#"{{"event":"x","user_id":{}{}}}"#,
                open(200),
                close(200)
            )),
        ),
        // Deep but balanced event data is valid JSON: refused as a stray
        // client event (not subscribed), not as a parse error.
        _ => one(
            "deep client event",
            Expect::Parsed,
            text(format!(
                r#"{{"event":"client-deep","channel":"{CALM}","data":{}{}}}"#,
                open(4_000),
                close(4_000)
            )),
        ),
    }
}

fn unknown_event(rng: &mut Rng) -> Junk {
    let len = 1 + rng.below(12);
    let random = format!("pusher:{}", rng.ident(len));
    let len = 1 + rng.below(30);
    let name = rng.text(len).replace("client-", "x");
    let random = if matches!(
        random.as_str(),
        "pusher:ping" | "pusher:pong" | "pusher:subscribe" | "pusher:unsubscribe" | "pusher:signin"
    ) {
        "pusher:nope".to_owned()
    } else {
        random
    };
    let v = match rng.below(10) {
        0 => json!({"event":random,"data":{"x":1}}),
        1 => json!({"event":name,"data":{}}),
        2 => json!({"event":"pusher_internal:member_added","channel":CALM,
            "data":"{\"user_id\":\"eve\",\"user_info\":{\"name\":\"eve\"}}"}),
        3 => json!({"event":"pusher_internal:member_removed","channel":CALM,
            "data":"{\"user_id\":\"alice\"}"}),
        4 => json!({"event":"pusher_internal:subscription_succeeded","channel":CALM,
            "data":"{\"presence\":{\"ids\":[\"eve\"],\"hash\":{\"eve\":{}},\"count\":1}}"}),
        5 => json!({"event":"pusher:connection_established","data":"{\"socket_id\":\"1.1\"}"}),
        6 => json!({"event":"pusher:error","data":{"code":4200,"message":"x"}}),
        7 => json!({"event":"","channel":CALM,"data":{}}),
        8 => json!({"event":"Client-shout","channel":CALM,"data":{}}),
        _ => json!({"event":"pusher:pong","data":[1,2,3],"channel":CALM,"user_id":"alice"}),
    };
    one("unknown/spoofed event", Expect::Parsed, text(v.to_string()))
}

fn subscribe(channel: &str, auth: Option<&str>, channel_data: Option<&str>) -> Message {
    let mut data = json!({ "channel": channel });
    if let Some(a) = auth {
        data["auth"] = json!(a);
    }
    if let Some(d) = channel_data {
        data["channel_data"] = json!(d);
    }
    text(json!({"event":"pusher:subscribe","data":data}).to_string())
}

fn bad_subscribe(rng: &mut Rng, sniffed: &Sniffed, me: &str, attacker: u64) -> Junk {
    let alice = presence_data("alice");
    let bob = presence_data("bob");
    let forged_key = format!("{KEY}:{}", rng.hex(32));
    let msg = match rng.below(12) {
        0 => {
            let long = "a".repeat(165);
            let longer = format!("presence-{}", "a".repeat(300));
            let len = 1 + rng.below(40);
            let junk_name = rng.text(len);
            let name = rng.pick(&[
                "",
                " ",
                "presence-",
                "private-",
                "private-encrypted-calm",
                "presence-calm ",
                " presence-calm",
                "presence-calm\n",
                "presence-calm\u{0}",
                "presence-calm#",
                "#server-to-user-alice",
                "private-calm/../presence-calm",
                "présence-calm",
                long.as_str(),
                longer.as_str(),
                junk_name.as_str(),
            ]);
            let auth = rng.pick(&[None, Some(forged_key.as_str())]);
            return one(
                "garbage channel name",
                Expect::Parsed,
                subscribe(name, auth, None),
            );
        }
        1 => subscribe(
            CALM,
            Some(forged_key.as_str()),
            Some(rng.pick(&[alice.as_str(), bob.as_str()])),
        ),
        2 => {
            let auth = sign::channel_auth(KEY, "not-the-secret", me, CALM, Some(&alice));
            subscribe(CALM, Some(auth.as_str()), Some(&alice))
        }
        // Replay of alice's own frame on another socket.
        3 => subscribe(
            CALM,
            Some(sniffed.alice_presence_auth.as_str()),
            Some(sniffed.alice_data.as_str()),
        ),
        4 => {
            let other = format!("other-key:{}", rng.hex(32));
            let auth = rng.pick(&[
                String::new(),
                KEY.to_owned(),
                format!("{KEY}:"),
                ":".to_owned(),
                other,
                format!("{KEY}:{}", "0".repeat(10_000)),
            ]);
            subscribe(CALM, Some(auth.as_str()), Some(&alice))
        }
        // A real signature, but for another channel.
        5 => {
            let auth = sign::channel_auth(KEY, SECRET, me, ARENA, Some(&alice));
            subscribe(CALM, Some(auth.as_str()), Some(&alice))
        }
        // A real signature over other channel_data than the one sent.
        6 => {
            let auth = sign::channel_auth(KEY, SECRET, me, CALM, Some(&presence_data("eve")));
            subscribe(CALM, Some(auth.as_str()), Some(&alice))
        }
        // Signed private-style (no channel_data) for a presence channel.
        7 => {
            let auth = sign::channel_auth(KEY, SECRET, me, CALM, None);
            subscribe(CALM, Some(auth.as_str()), None)
        }
        8 => match rng.below(3) {
            0 => subscribe(PRIVATE, Some(sniffed.alice_private_auth.as_str()), None),
            1 => subscribe(PRIVATE, Some(forged_key.as_str()), None),
            _ => {
                let auth = sign::channel_auth(KEY, "not-the-secret", me, PRIVATE, None);
                subscribe(PRIVATE, Some(auth.as_str()), None)
            }
        },
        // Hostile channel_data that a careless auth endpoint signed.
        9 => {
            let id129 = json!({"user_id":"u".repeat(129)}).to_string();
            let big_info = json!({"user_id":"m","user_info":{"bio":"x".repeat(2000)}}).to_string();
            let bomb = format!(r#"{{"user_id":"m","user_info":{}}}"#, "[".repeat(10_000));
            let data = rng.pick(&[
                id129.as_str(),
                big_info.as_str(),
                bomb.as_str(),
                r#"{"user_id":{"id":"alice"}}"#,
                r#"{"user_id":""}"#,
                r#"{"user_id":null}"#,
                r#"{"user_id":1e400}"#,
                r#"{"user_id":"m""#,
                "null",
                "[]",
                "",
            ]);
            let auth = sign::channel_auth(KEY, SECRET, me, ARENA, Some(data));
            subscribe(ARENA, Some(auth.as_str()), Some(data))
        }
        // A legitimate join of the attackers' own channel, even as "alice":
        // it must not touch presence-calm.
        10 => {
            let user = rng.pick(&[format!("mallory-{attacker}"), "alice".into(), "bob".into()]);
            let data = presence_data(&user);
            let auth = sign::channel_auth(KEY, SECRET, me, ARENA, Some(&data));
            subscribe(ARENA, Some(auth.as_str()), Some(&data))
        }
        // Unknown fields are ignored; a public channel just works.
        _ => text(
            json!({"event":"pusher:subscribe","extra":[1,2],
                "data":{"channel":format!("junk-{}", rng.ident(8)),"x":{}}})
            .to_string(),
        ),
    };
    one("forged/odd subscribe", Expect::Parsed, msg)
}

fn stray_client_event(rng: &mut Rng) -> Junk {
    let somewhere = format!("presence-{}", rng.ident(6));
    let channel = rng.pick(&[
        CALM.to_owned(),
        PRIVATE.to_owned(),
        "calm".to_owned(),
        "private-nowhere".to_owned(),
        ARENA.to_owned(),
        somewhere,
    ]);
    let data = match rng.below(4) {
        0 => json!("x".repeat(12_000)),
        1 => json!({"text": rng.text(20)}),
        _ => json!({"n": rng.below(1000)}),
    };
    let mut v = json!({"event":format!("client-{}", rng.ident(5)),"channel":channel,"data":data});
    if rng.below(3) == 0 {
        v["user_id"] = json!("alice");
    }
    one("stray client event", Expect::Parsed, text(v.to_string()))
}

fn stray_unsubscribe(rng: &mut Rng) -> Junk {
    let random = rng.text(10);
    let sync = format!("sync-{}", rng.ident(4));
    let channel = rng.pick(&[
        CALM.to_owned(),
        PRIVATE.to_owned(),
        ARENA.to_owned(),
        String::new(),
        random,
        sync,
    ]);
    let v = if rng.below(2) == 0 {
        json!({"event":"pusher:unsubscribe","data":{"channel":channel}})
    } else {
        json!({"event":"pusher:unsubscribe","data":json!({"channel":channel}).to_string()})
    };
    one("stray unsubscribe", Expect::Parsed, text(v.to_string()))
}

fn forged_signin(rng: &mut Rng, me: &str) -> Junk {
    let user_data = rng.pick(&[
        r#"{"id":"alice"}"#.to_owned(),
        r#"{"id":"bob","watchlist":["alice"]}"#.to_owned(),
        "[".repeat(5_000),
    ]);
    let auth = match rng.below(2) {
        0 => format!("{KEY}:{}", rng.hex(32)),
        _ => sign::signin_auth(KEY, "not-the-secret", me, &user_data),
    };
    let v = json!({"event":"pusher:signin","data":{"auth":auth,"user_data":user_data}});
    one("forged signin", Expect::Parsed, text(v.to_string()))
}

fn binary(rng: &mut Rng) -> Junk {
    let bytes: Vec<u8> = match rng.below(5) {
        0 => {
            let n = rng.below(2_000);
            rng.bytes(n)
        }
        1 => rng.pick(&[
            vec![0xff, 0xfe],
            vec![0xc0, 0x80],
            vec![0xed, 0xa0, 0x80],
            vec![0x80],
            vec![0xf8, 0x88, 0x80, 0x80, 0x80],
        ]),
        2 => {
            let mut v =
                br#"{"event":"pusher:subscribe","data":{"channel":"presence-calm"}}"#.to_vec();
            v.push(0xff);
            v
        }
        // A valid ping, but binary: not part of the protocol, so no pong.
        3 => br#"{"event":"pusher:ping","data":{}}"#.to_vec(),
        _ => Vec::new(),
    };
    one(
        "binary",
        Expect::Malformed,
        Message::Binary(Bytes::from(bytes)),
    )
}

fn random_text(rng: &mut Rng) -> Junk {
    let n = rng.below(3_000);
    let mut s = rng.text(n);
    // Anything but an object is malformed; make sure it is not one.
    if s.trim_start_matches([' ', '\n', '\t', '\r'])
        .starts_with('{')
    {
        s.insert(0, 'x');
    }
    one("random text", Expect::Malformed, text(s))
}

fn ws_control(rng: &mut Rng) -> Junk {
    let n = rng.below(126);
    let payload = Bytes::from(rng.bytes(n));
    let msg = if rng.below(3) == 0 {
        Message::Pong(payload)
    } else {
        Message::Ping(payload)
    };
    one("websocket ping/pong", Expect::Control, msg)
}

fn odd_ping(rng: &mut Rng) -> Junk {
    let s = rng.pick(&[
        r#"{"event":"pusher:ping","data":5}"#,
        r#"{"event":"pusher:ping"}"#,
        r#"{"event":"pusher:ping","data":"[[[["}"#,
        r#"{"event":"pusher:ping","channel":"presence-calm","data":{"x":[1,2,3]}}"#,
        r#"{"event":"pusher:ping","user_id":"alice","data":null}"#,
    ]);
    one("odd pusher:ping", Expect::Pong, text(s))
}

fn big(rng: &mut Rng) -> Junk {
    const MB: usize = 1024 * 1024;
    match rng.below(8) {
        0 => one(
            "1 MB text",
            Expect::Fatal,
            text(format!(
                r#"{{"event":"client-x","channel":"{CALM}","data":"{}"}}"#,
                "x".repeat(MB)
            )),
        ),
        1 => one(
            "1 MB binary",
            Expect::Fatal,
            Message::Binary(Bytes::from(rng.bytes(MB))),
        ),
        2 => one(
            "1 byte over the limit",
            Expect::Fatal,
            text("y".repeat(MAX_MESSAGE + 1)),
        ),
        3 | 4 => one(
            "60 KB channel name",
            Expect::Parsed,
            subscribe(&"a".repeat(60_000), None, None),
        ),
        5 => one(
            "60 KB client event",
            Expect::Parsed,
            text(
                json!({"event":"client-big","channel":CALM,"data":"z".repeat(60_000)}).to_string(),
            ),
        ),
        _ => one(
            "near-limit junk",
            Expect::Malformed,
            text("w".repeat(MAX_MESSAGE - 64)),
        ),
    }
}

fn raw(opcode: OpCode, is_final: bool, rsv1: bool, payload: &[u8]) -> Message {
    Message::Frame(Frame::from_payload(
        FrameHeader {
            is_final,
            rsv1,
            opcode,
            ..FrameHeader::default()
        },
        Bytes::copy_from_slice(payload),
    ))
}

fn protocol_violation(rng: &mut Rng) -> Junk {
    let text_op = OpCode::Data(OpData::Text);
    let (kind, msgs) = match rng.below(8) {
        0 => (
            "invalid utf-8 text",
            vec![raw(text_op, true, false, b"{\"event\":\"\xff\xfe\"}")],
        ),
        1 => (
            "orphan continuation",
            vec![raw(OpCode::Data(OpData::Continue), true, false, b"tail")],
        ),
        2 => (
            "reserved data opcode",
            vec![raw(OpCode::Data(OpData::Reserved(3)), true, false, b"{}")],
        ),
        3 => (
            "reserved control opcode",
            vec![raw(
                OpCode::Control(Control::Reserved(11)),
                true,
                false,
                b"",
            )],
        ),
        4 => (
            "oversized ping",
            vec![raw(OpCode::Control(Control::Ping), true, false, &[7; 200])],
        ),
        5 => (
            "rsv1 without extension",
            vec![raw(text_op, true, true, br#"{"event":"pusher:ping"}"#)],
        ),
        6 => (
            "interleaved fragments",
            vec![
                raw(text_op, false, false, b"{\"event\":"),
                text(r#"{"event":"pusher:ping"}"#),
            ],
        ),
        _ => (
            "bad close payload",
            vec![raw(OpCode::Control(Control::Close), true, false, &[3])],
        ),
    };
    Junk {
        kind,
        expect: Expect::Fatal,
        msgs,
    }
}

/// What one attacker did and saw.
#[derive(Debug, Default)]
struct Tally {
    items: usize,
    frames: usize,
    bytes: usize,
    by_kind: BTreeMap<&'static str, usize>,
    connections: usize,
    bursts: usize,
    acked_bursts: usize,
    malformed_sent: usize,
    malformed_acked: usize,
    pongs: usize,
    errors: usize,
    subscription_errors: usize,
    /// How connections ended: close codes, drops, send failures.
    ends: BTreeMap<String, usize>,
    /// Fatal items after which the connection still answered the barrier.
    fatal_survived: BTreeMap<&'static str, usize>,
}

impl Tally {
    fn add(&mut self, o: Tally) {
        self.items += o.items;
        self.frames += o.frames;
        self.bytes += o.bytes;
        self.connections += o.connections;
        self.bursts += o.bursts;
        self.acked_bursts += o.acked_bursts;
        self.malformed_sent += o.malformed_sent;
        self.malformed_acked += o.malformed_acked;
        self.pongs += o.pongs;
        self.errors += o.errors;
        self.subscription_errors += o.subscription_errors;
        for (k, v) in o.by_kind {
            *self.by_kind.entry(k).or_default() += v;
        }
        for (k, v) in o.ends {
            *self.ends.entry(k).or_default() += v;
        }
        for (k, v) in o.fatal_survived {
            *self.fatal_survived.entry(k).or_default() += v;
        }
    }
}

enum Settled {
    /// The barrier came back: everything before it was processed.
    Acked { pongs: usize, errors: usize },
    /// The connection ended, and how.
    Ended(String),
}

/// What an attacker must never see: anything of the observers' channels
/// beyond refusals.
fn assert_not_leaked(f: &ServerFrame) {
    match f {
        ServerFrame::SubscriptionSucceeded { channel, .. } => {
            assert!(
                channel != CALM && channel != PRIVATE,
                "an attacker got into {channel}"
            );
        }
        ServerFrame::MemberAdded { channel, .. } | ServerFrame::MemberRemoved { channel, .. } => {
            assert_ne!(
                channel, CALM,
                "an attacker saw presence-calm members: {f:?}"
            );
        }
        ServerFrame::Event {
            channel: Some(c), ..
        } => assert!(c != CALM && c != PRIVATE, "an attacker got an event: {f:?}"),
        ServerFrame::SubscriptionError {
            channel, status, ..
        } if channel == CALM || channel == PRIVATE => {
            assert!(
                *status == 400 || *status == 401,
                "refusal of {channel} with status {status}: {f:?}"
            );
        }
        _ => {}
    }
}

/// Reads until the barrier `sync` is confirmed or the connection ends.
async fn settle(c: &mut Client, sync: &str, t: &mut Tally) -> Settled {
    let (mut pongs, mut errors) = (0, 0);
    loop {
        let msg = timeout(DEADLINE, c.ws.next()).await.unwrap_or_else(|_| {
            panic!("server stalled: no answer to barrier {sync} within {DEADLINE:?}")
        });
        match msg {
            Some(Ok(Message::Text(txt))) => {
                let f = ServerFrame::parse(txt.as_str()).unwrap_or_else(|e| {
                    panic!(
                        "server sent an unparseable frame ({e}): {:.200}",
                        txt.as_str()
                    )
                });
                assert_not_leaked(&f);
                match f {
                    ServerFrame::SubscriptionSucceeded { channel, .. } if channel == sync => {
                        return Settled::Acked { pongs, errors }
                    }
                    ServerFrame::Pong => pongs += 1,
                    ServerFrame::Error { .. } => errors += 1,
                    ServerFrame::SubscriptionError { .. } => t.subscription_errors += 1,
                    _ => {}
                }
            }
            Some(Ok(Message::Binary(b))) => panic!("server sent a binary frame: {b:?}"),
            Some(Ok(Message::Close(Some(cf)))) => {
                return Settled::Ended(format!("close {}", u16::from(cf.code)))
            }
            Some(Ok(Message::Close(None))) => return Settled::Ended("close, no code".into()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Settled::Ended(format!("dropped: {e}")),
            None => return Settled::Ended("dropped: eof".into()),
        }
    }
}

/// An attacker's connection, with messages that say who stalled.
async fn connect(addr: SocketAddr, n: u64) -> Client {
    let url = format!("ws://{addr}/app/{KEY}?protocol=7&client=hostile&version=0");
    let (ws, _) = timeout(DEADLINE, tokio_tungstenite::connect_async(url))
        .await
        .unwrap_or_else(|_| panic!("attacker {n}: no handshake within {DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("attacker {n}: handshake failed: {e}"));
    let mut c = Client {
        ws,
        socket_id: String::new(),
        activity_timeout: 0,
    };
    let first = timeout(DEADLINE, c.ws.next())
        .await
        .unwrap_or_else(|_| panic!("attacker {n}: no connection_established within {DEADLINE:?}"));
    match first {
        Some(Ok(Message::Text(t))) => match ServerFrame::parse(t.as_str()) {
            Ok(ServerFrame::ConnectionEstablished { socket_id, .. }) => c.socket_id = socket_id,
            other => panic!("attacker {n}: expected connection_established, got {other:?}"),
        },
        other => panic!("attacker {n}: expected connection_established, got {other:?}"),
    }
    c
}

/// One attacking connection (reconnecting as needed) sending
/// `ITEMS_PER_ATTACKER` junk items in bursts, each closed by a barrier.
async fn attack(addr: SocketAddr, sniffed: Sniffed, n: u64) -> Tally {
    let mut rng = Rng::new(0xBAD_5EED + n);
    let mut t = Tally::default();
    let mut conn: Option<Client> = None;
    let mut burst_no = 0;
    while t.items < ITEMS_PER_ATTACKER {
        if conn.is_none() {
            t.connections += 1;
            conn = Some(connect(addr, n).await);
        }
        let c = conn.as_mut().expect("connected");
        burst_no += 1;
        t.bursts += 1;
        let len = 1 + rng.below(MAX_BURST);
        let mut burst = Vec::new();
        while burst.len() < len && t.items + burst.len() < ITEMS_PER_ATTACKER {
            let j = junk(&mut rng, &sniffed, &c.socket_id, n);
            let fatal = j.expect == Expect::Fatal;
            burst.push(j);
            if fatal {
                break;
            }
        }
        let count = |e: Expect| burst.iter().filter(|j| j.expect == e).count();
        let (malformed, pongs_due) = (count(Expect::Malformed), count(Expect::Pong));
        let fatal = burst
            .iter()
            .find(|j| j.expect == Expect::Fatal)
            .map(|j| j.kind);
        t.items += burst.len();
        t.malformed_sent += malformed;

        let sync = format!("sync-{n}-{burst_no}");
        let mut failed = None;
        'send: for j in burst {
            *t.by_kind.entry(j.kind).or_default() += 1;
            for m in j.msgs {
                t.frames += 1;
                t.bytes += m.len();
                if let Err(e) = c.ws.feed(m).await {
                    failed = Some(e);
                    break 'send;
                }
            }
        }
        if failed.is_none() {
            let barrier = json!({"event":"pusher:subscribe","data":{"channel":sync}});
            failed = c.ws.send(text(barrier.to_string())).await.err();
        }
        if let Some(e) = failed {
            // The server already hung up (a fatal frame, or the client-event
            // rate limit): start over on a fresh connection.
            *t.ends.entry(format!("send failed: {e}")).or_default() += 1;
            conn = None;
            continue;
        }
        match settle(c, &sync, &mut t).await {
            Settled::Acked { pongs, errors } => {
                assert_eq!(
                    pongs, pongs_due,
                    "attacker {n} burst {burst_no}: pongs for {pongs_due} pusher:pings"
                );
                assert!(
                    errors >= malformed,
                    "attacker {n} burst {burst_no}: {malformed} malformed frames, {errors} pusher:error"
                );
                t.acked_bursts += 1;
                t.malformed_acked += malformed;
                t.pongs += pongs;
                t.errors += errors;
                if let Some(kind) = fatal {
                    *t.fatal_survived.entry(kind).or_default() += 1;
                }
                // Leave the barrier channel; it goes out with the next burst.
                let leave = json!({"event":"pusher:unsubscribe","data":{"channel":sync}});
                let _ = c.ws.feed(text(leave.to_string())).await;
            }
            Settled::Ended(how) => {
                *t.ends.entry(how).or_default() += 1;
                conn = None;
            }
        }
    }
    // The last connection is dropped without a close frame.
    t
}

fn upgrade(addr: SocketAddr, path: &str, headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{headers}\r\n")
}

fn good_upgrade(addr: SocketAddr) -> String {
    upgrade(addr, &format!("/app/{KEY}?protocol=7"), GOOD_KEY)
}

/// Sends `request` and returns the status line of the answer, or `None`
/// when the server hung up without answering. With `half_close` the write
/// side is shut after the request, so a server waiting for more bytes sees
/// the end (hyper may then hang up without answering, which is fine for
/// garbage, but not for requests that deserve an answer).
async fn answer(addr: SocketAddr, request: &[u8], half_close: bool) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // The server may hang up mid-write; what it answered is what counts.
    let _ = s.write_all(request).await;
    if half_close {
        let _ = s.shutdown().await;
    }
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = timeout(DEADLINE, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("server neither answered nor hung up: {:.60?}", request));
        match n {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        if raw.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&raw).into_owned();
    (!head.is_empty()).then(|| head.split("\r\n").next().unwrap_or_default().to_owned())
}

fn status(head: &Option<String>) -> Option<u16> {
    head.as_ref()
        .and_then(|h| h.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
}

/// First complete unmasked server frame's payload in `buf`, if any.
fn server_frame(buf: &[u8]) -> Option<&[u8]> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[0], 0x81, "a final text frame");
    assert_eq!(buf[1] & 0x80, 0, "server frames are unmasked");
    let (len, head) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        126 | 127 => return None,
        n => (usize::from(n), 2),
    };
    buf.get(head..head + len)
}

/// A valid upgrade sent one byte per write, then a frame cut short: the
/// handshake must work from fragments, and the half frame must not wedge
/// anything (the connection slot comes back; checked at the end).
async fn trickled(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).unwrap();
    for b in good_upgrade(addr).bytes() {
        s.write_all(&[b]).await.expect("write a byte");
    }
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let payload = loop {
        let n = timeout(DEADLINE, s.read(&mut buf))
            .await
            .expect("handshake answer within the deadline")
            .expect("read");
        assert!(n > 0, "server hung up on a trickled handshake");
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).into_owned();
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            if let Some(p) = server_frame(&raw[end + 4..]) {
                break p.to_vec();
            }
        }
    };
    let hello = ServerFrame::parse(std::str::from_utf8(&payload).unwrap()).unwrap();
    assert!(
        matches!(hello, ServerFrame::ConnectionEstablished { .. }),
        "{hello:?}"
    );
    // A masked text frame announcing 1000 bytes, of which 3 arrive.
    s.write_all(&[0x81, 0x80 | 126, 0x03, 0xe8, 1, 2, 3, 4, b'{', b'"', b'e'])
        .await
        .unwrap();
    drop(s);
    "byte-by-byte handshake: 101 + connection_established; half frame then drop".into()
}

/// Raw TCP and HTTP-level abuse; returns what happened, for the report.
async fn raw_abuse(addr: SocketAddr) -> Vec<String> {
    let mut out = Vec::new();
    let mut rng = Rng::new(0x7C9_AB05E);
    let req = good_upgrade(addr);

    // Half-sent handshakes, dropped at once.
    for cut in [1, 4, 20, req.len() / 2, req.len() - 2, req.len() - 1] {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(&req.as_bytes()[..cut]).await.unwrap();
        drop(s);
    }
    out.push("6 half-sent handshakes dropped".into());

    out.push(trickled(addr).await);

    // Garbage byte streams.
    let mut garbage = vec![
        rng.bytes(64 * 1024),
        [
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".as_slice(),
            &rng.bytes(500),
        ]
        .concat(),
        [
            format!("GET /app/{KEY}?protocol=7 HTTP/1.1\r\n").as_bytes(),
            &rng.bytes(16 * 1024),
        ]
        .concat(),
        b"\r\n".repeat(10_000),
    ];
    for (i, g) in garbage.drain(..).enumerate() {
        let head = answer(addr, &g, true).await;
        let st = status(&head);
        assert!(
            st.is_none_or(|s| (400..500).contains(&s)),
            "garbage stream {i} got {head:?}"
        );
        out.push(format!("garbage stream {i}: {head:?}"));
    }

    // Bad upgrades.
    let path = format!("/app/{KEY}?protocol=7");
    let many_headers: String = (0..200).map(|i| format!("X-Junk-{i}: {i}\r\n")).collect();
    // X-Forwarded-For is believed from loopback (a local proxy) and keys
    // the limits per address: junk in it must neither fail the upgrade
    // nor pick an address that is not there.
    let junk_forwarded =
        format!("{GOOD_KEY}X-Forwarded-For: not-an-ip, ::ffff:zz, 999.1.1.1, , \u{7f}\r\n");
    let long_forwarded = format!(
        "{GOOD_KEY}X-Forwarded-For: {}\r\n",
        (0..500)
            .map(|i| format!("10.{}.{}.1", i / 250, i % 250))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let bad = [
        (
            "version 12",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 12\r\n",
            true,
        ),
        ("no key", "Sec-WebSocket-Version: 13\r\n", true),
        (
            "no version",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            true,
        ),
        (
            "version garbage",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: \u{1}x\r\n",
            true,
        ),
        (
            "key not base64",
            "Sec-WebSocket-Key: %%% not base64 %%%\r\nSec-WebSocket-Version: 13\r\n",
            true,
        ),
        (
            "empty key",
            "Sec-WebSocket-Key: \r\nSec-WebSocket-Version: 13\r\n",
            true,
        ),
        ("200 headers", many_headers.as_str(), true),
        ("junk X-Forwarded-For", junk_forwarded.as_str(), false),
        ("500 forwarded addresses", long_forwarded.as_str(), false),
    ];
    for (what, headers, must_refuse) in bad {
        let head = answer(addr, upgrade(addr, &path, headers).as_bytes(), false).await;
        let st = status(&head);
        if must_refuse {
            assert!(
                st.is_some_and(|s| (400..500).contains(&s)),
                "upgrade with {what}: {head:?}"
            );
        } else {
            assert!(st.is_some(), "upgrade with {what}: no answer");
        }
        out.push(format!("upgrade with {what}: {head:?}"));
    }
    let plain = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let head = answer(addr, plain.as_bytes(), false).await;
    assert!(
        status(&head).is_some_and(|s| (400..500).contains(&s)),
        "plain GET of the websocket path: {head:?}"
    );
    out.push(format!("plain GET {path}: {head:?}"));
    let head = answer(addr, b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", false).await;
    assert!(
        status(&head).is_some_and(|s| (400..600).contains(&s)),
        "{head:?}"
    );
    out.push(format!("HTTP/9.9: {head:?}"));

    // WebSockets to paths that are not /app/{key}.
    for p in [
        "/nope",
        "/app",
        "/app/",
        &format!("/app/{KEY}/extra"),
        "/apps/42/channels",
    ] {
        let url = format!("ws://{addr}{p}");
        let r = timeout(DEADLINE, tokio_tungstenite::connect_async(url))
            .await
            .expect("handshake answer within the deadline");
        match r {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let st = resp.status().as_u16();
                assert!((400..500).contains(&st), "websocket to {p}: {st}");
                out.push(format!("websocket to {p}: {st}"));
            }
            Err(e) => panic!("websocket to {p}: unexpected error {e}"),
            Ok(_) => panic!("websocket to {p} was accepted"),
        }
    }
    out
}

/// `from` sends a client event on the private channel and `to` gets it.
async fn relay(from: &mut Client, to: &mut Client) {
    let data = json!({"ok": true, "from": from.socket_id});
    from.send_json(json!({"event":"client-still-here","channel":PRIVATE,"data":data}))
        .await;
    match to.next_answering().await {
        ServerFrame::Event {
            event,
            channel,
            data: got,
            user_id,
        } => {
            assert_eq!(event, "client-still-here");
            assert_eq!(channel.as_deref(), Some(PRIVATE));
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&got).unwrap(),
                data
            );
            assert_eq!(user_id, None, "no user_id on a private channel");
        }
        other => panic!("expected the client event, got {other:?}"),
    }
}

async fn hostile() {
    let started = Instant::now();
    let server = start(config()).await;
    let addr = server.local_addr();
    let app = server.shared().apps[0].clone();
    let metrics = server.shared().metrics.clone();

    // Observers.
    let mut alice = Client::connect(addr).await;
    let roster = alice.join(CALM, "alice").await;
    assert_eq!(roster.len(), 1);
    let mut bob = Client::connect(addr).await;
    let roster = bob.join(CALM, "bob").await;
    assert_eq!(
        roster.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    assert!(matches!(
        alice.next().await,
        ServerFrame::MemberAdded { .. }
    ));
    for o in [&mut alice, &mut bob] {
        assert!(matches!(
            o.subscribe_private(PRIVATE).await,
            ServerFrame::SubscriptionSucceeded { .. }
        ));
    }
    let roster_before = app.users(CALM).unwrap();
    let calm_before = app.channel_info(CALM).await.unwrap();
    let private_before = app.channel_info(PRIVATE).await.unwrap();
    assert_eq!(roster_before, ["alice", "bob"]);
    let malformed_before = metrics.malformed_frames.load(Ordering::Relaxed);
    let sniffed = Sniffed {
        alice_presence_auth: sign::channel_auth(
            KEY,
            SECRET,
            &alice.socket_id,
            CALM,
            Some(&presence_data("alice")),
        ),
        alice_data: presence_data("alice"),
        alice_private_auth: sign::channel_auth(KEY, SECRET, &alice.socket_id, PRIVATE, None),
    };

    // Half-sent handshakes held open for the whole attack.
    let req = good_upgrade(addr);
    let mut held = Vec::new();
    for cut in [10, req.len() / 2, req.len() - 2] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&req.as_bytes()[..cut]).await.unwrap();
        held.push(s);
    }

    // The attack.
    let attack_started = Instant::now();
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|n| tokio::spawn(attack(addr, sniffed.clone(), n)))
        .collect();
    let raw_report = raw_abuse(addr).await;
    let mut total = Tally::default();
    for a in attackers {
        match a.await {
            Ok(t) => total.add(t),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    let attack_took = attack_started.elapsed();

    // The held handshakes got no answer (and are still open: the server
    // has no header timeout).
    let mut held_open = 0;
    for s in &held {
        let mut buf = [0u8; 64];
        match s.try_read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => held_open += 1,
            Ok(0) | Err(_) => {}
            Ok(n) => panic!(
                "a half-sent handshake got an answer: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
        }
    }
    drop(held);

    // The observers noticed nothing: at most server pings.
    for o in [&mut alice, &mut bob] {
        let seen = o.drain().await;
        assert!(
            seen.iter().all(|f| *f == ServerFrame::Ping),
            "an observer saw the attack: {seen:?}"
        );
        if !seen.is_empty() {
            o.send(r#"{"event":"pusher:pong","data":{}}"#).await;
        }
    }
    assert_eq!(app.users(CALM).unwrap(), roster_before);
    assert_eq!(app.channel_info(CALM).await.unwrap(), calm_before);
    assert_eq!(app.channel_info(PRIVATE).await.unwrap(), private_before);

    // Every attacker connection is cleaned up: slots and channels.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let names: Vec<String> = app.channels("").await.into_iter().map(|c| c.0).collect();
        if app.connection_count() == 2 && names == [CALM, PRIVATE] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "attackers not cleaned up: {} connections, channels {names:?}",
            app.connection_count()
        );
        tokio::task::yield_now().await;
    }

    // A newcomer still gets in, and the observers see exactly that.
    let mut carol = Client::connect(addr).await;
    let roster = carol.join(CALM, "carol").await;
    assert_eq!(
        roster.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
        ["alice", "bob", "carol"]
    );
    for o in [&mut alice, &mut bob] {
        match o.next_answering().await {
            ServerFrame::MemberAdded {
                channel, user_id, ..
            } => assert_eq!((channel.as_str(), user_id.as_str()), (CALM, "carol")),
            other => panic!("expected carol's member_added, got {other:?}"),
        }
    }
    carol.close().await;
    for o in [&mut alice, &mut bob] {
        assert_eq!(
            o.next_answering().await,
            ServerFrame::MemberRemoved {
                channel: CALM.into(),
                user_id: "carol".into()
            }
        );
    }
    assert_eq!(app.users(CALM).unwrap(), roster_before);

    // The observers still talk on the private channel, both ways.
    relay(&mut alice, &mut bob).await;
    relay(&mut bob, &mut alice).await;
    assert_eq!(alice.drain().await, vec![]);
    assert_eq!(bob.drain().await, vec![]);

    let health = http(addr, "GET", "/health", &[], b"").await;
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(health.json()["status"], "ok");

    // The junk was parsed and counted: at least every malformed frame of
    // an acknowledged burst, at most every frame sent.
    let malformed = metrics.malformed_frames.load(Ordering::Relaxed) - malformed_before;
    assert!(
        malformed as usize >= total.malformed_acked && total.malformed_acked >= 1000,
        "malformed_frames rose by {malformed}; {} malformed frames were acknowledged",
        total.malformed_acked
    );
    assert!(
        malformed as usize <= total.frames,
        "{malformed} > {} frames",
        total.frames
    );
    assert!(total.items >= ATTACKERS as usize * ITEMS_PER_ATTACKER);

    println!(
        "hostile: {} items / {} frames / {:.1} MB from {} attackers over {} connections \
         in {} bursts ({} acknowledged) in {:.2?}; whole test {:.2?}",
        total.items,
        total.frames,
        total.bytes as f64 / 1e6,
        ATTACKERS,
        total.connections,
        total.bursts,
        total.acked_bursts,
        attack_took,
        started.elapsed()
    );
    println!(
        "malformed_frames +{malformed} (sent {}, acknowledged {}); pusher:error {}; \
         subscription_error {}; pongs {}; slow-client closes {}",
        total.malformed_sent,
        total.malformed_acked,
        total.errors,
        total.subscription_errors,
        total.pongs,
        metrics.slow_client_disconnects.load(Ordering::Relaxed)
    );
    println!("by kind: {:?}", total.by_kind);
    println!("connection ends: {:?}", total.ends);
    println!(
        "fatal items the connection survived: {:?}",
        total.fatal_survived
    );
    println!("half-sent handshakes still open after the attack: {held_open}/3");
    for line in raw_report {
        println!("raw: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_from_many_connections_leaves_others_untouched() {
    timeout(BUDGET, hostile())
        .await
        .expect("the hostile test finished within its budget");
}
