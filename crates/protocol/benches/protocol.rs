//! Microbenchmarks of the hot paths the server runs per frame and per
//! presence change: `cargo bench -p whosin-protocol`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use std::hint::black_box;
use std::sync::Arc;
use whosin_protocol::frame::{server, Data};
use whosin_protocol::roster::{presence_json, subscription_succeeded_escaped};
use whosin_protocol::{sign, ClientFrame, EscapedMember, Presence};

fn frames(c: &mut Criterion) {
    let subscribe = r#"{"event":"pusher:subscribe","data":{"channel":"presence-whosin","auth":"278d425bdf160c739803:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80","channel_data":"{\"user_id\":\"v-123\",\"user_info\":{\"name\":\"Ada Lovelace\",\"ip\":\"203.0.113.7\"}}"}}"#;
    let client_event = r#"{"event":"client-typing","channel":"presence-whosin","data":{"typing":true,"at":1732880000}}"#;
    c.bench_function("parse pusher:subscribe", |b| {
        b.iter(|| ClientFrame::parse(black_box(subscribe)).unwrap())
    });
    c.bench_function("parse client event", |b| {
        b.iter(|| ClientFrame::parse(black_box(client_event)).unwrap())
    });
    c.bench_function("encode member_added", |b| {
        b.iter(|| {
            server::member_added(
                black_box("presence-whosin"),
                black_box("v-123"),
                black_box(r#"{"name":"Ada"}"#),
            )
        })
    });
    let payload = "x".repeat(1024);
    c.bench_function("encode 1 KB broadcast event", |b| {
        b.iter(|| {
            server::event(
                black_box("update"),
                black_box("news"),
                Data::Str(black_box(&payload)),
                None,
            )
        })
    });
}

fn signing(c: &mut Criterion) {
    let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
    let auth = sign::channel_auth(
        "278d425bdf160c739803",
        "7ad3773142a6692b25b8",
        "1234.1234",
        "presence-foobar",
        Some(data),
    );
    c.bench_function("sign presence subscription", |b| {
        b.iter(|| {
            sign::channel_auth(
                "278d425bdf160c739803",
                "7ad3773142a6692b25b8",
                black_box("1234.1234"),
                "presence-foobar",
                Some(data),
            )
        })
    });
    c.bench_function("verify presence subscription", |b| {
        b.iter(|| {
            sign::verify_channel_auth(
                "278d425bdf160c739803",
                "7ad3773142a6692b25b8",
                "1234.1234",
                "presence-foobar",
                Some(data),
                black_box(&auth),
            )
        })
    });
}

fn roster(c: &mut Criterion) {
    let info: Arc<str> = Arc::from(r#"{"name":"Visitor","ip":"203.0.113.7"}"#);
    let mut full: Presence<u64> = Presence::new();
    for i in 0..10_000u64 {
        full.join(&format!("user-{i}"), info.clone(), i, usize::MAX)
            .unwrap();
    }
    c.bench_function("presence join+leave at 10k members", |b| {
        b.iter_batched(
            || full.clone(),
            |mut p| {
                let _ = p.join("newcomer", info.clone(), 99_999, usize::MAX);
                p.leave("newcomer", &99_999);
                p
            },
            BatchSize::LargeInput,
        )
    });
    c.bench_function("presence second tab at 10k members", |b| {
        let mut p = full.clone();
        b.iter(|| {
            let _ = p.join(black_box("user-5000"), info.clone(), 123_456, usize::MAX);
            p.leave("user-5000", &123_456);
        })
    });
    let pairs: Vec<(String, String)> = full
        .iter()
        .map(|(u, i)| (u.to_string(), i.to_string()))
        .collect();
    let pairs = || pairs.iter().map(|(u, i)| (u.as_str(), i.as_str()));
    c.bench_function("subscription_succeeded roster JSON at 10k members", |b| {
        b.iter(|| presence_json(black_box(pairs())))
    });
    c.bench_function(
        "subscription_succeeded frame, encoded then escaped, at 10k members",
        |b| {
            b.iter(|| {
                server::subscription_succeeded(
                    "presence-whosin",
                    Some(&presence_json(black_box(pairs()))),
                )
            })
        },
    );
    let escaped: Vec<EscapedMember> = pairs().map(|(u, i)| EscapedMember::new(u, i)).collect();
    c.bench_function(
        "subscription_succeeded frame from entries escaped at join, at 10k members",
        |b| {
            b.iter(|| {
                subscription_succeeded_escaped("presence-whosin", || black_box(&escaped).iter())
            })
        },
    );
}

criterion_group!(benches, frames, signing, roster);
criterion_main!(benches);
