//! Microbenchmarks of the server's WebSocket framing, the per-frame cost
//! under every message: `cargo bench -p whosin-server --bench ws`.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use whosin_server::ws::frame::{header, Decoder, Step, OP_TEXT};

/// A masked client text frame, as a browser sends it.
fn masked(payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x81];
    if payload.len() < 126 {
        out.push(0x80 | payload.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

fn framing(c: &mut Criterion) {
    let subscribe = masked(br#"{"event":"pusher:subscribe","data":{"channel":"presence-whosin","auth":"278d425bdf160c739803:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80","channel_data":"{\"user_id\":\"v-123\",\"user_info\":{\"name\":\"Ada Lovelace\",\"ip\":\"203.0.113.7\"}}"}}"#);
    let event = masked(&[b'x'; 4000]);
    let mut decoder = Decoder::new(10_240);
    c.bench_function("decode a masked pusher:subscribe frame (285 B)", |b| {
        b.iter(|| match decoder.step(black_box(&subscribe)) {
            Ok(Step::Message(n, m)) => (n, m),
            other => panic!("{other:?}"),
        })
    });
    c.bench_function("decode a masked 4 KB client event frame", |b| {
        b.iter(|| match decoder.step(black_box(&event)) {
            Ok(Step::Message(n, m)) => (n, m),
            other => panic!("{other:?}"),
        })
    });
    c.bench_function("encode a server frame header", |b| {
        b.iter(|| header(OP_TEXT, black_box(300)))
    });
}

criterion_group!(benches, framing);
criterion_main!(benches);
