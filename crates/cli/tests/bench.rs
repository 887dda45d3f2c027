//! `whosin bench presence` against `whosin serve`, small and bounded: the
//! report is complete and the server lost or duplicated nothing.

mod common;

use common::*;
use std::time::Duration;

/// Every bench run here is small; this bounds a stuck one.
const BENCH_DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn presence_bench_reports_latencies_and_no_lost_events() {
    let server = ServerProcess::start(&[]);
    let out = run_bounded(
        &[
            "bench",
            "presence",
            "--url",
            &server.url(),
            "--key",
            KEY,
            "--secret",
            SECRET,
            "--members",
            "60",
            "--batch",
            "20",
            "--timeout",
            "60",
            "--json",
            "--server-pid",
            &server.child.id().to_string(),
        ],
        BENCH_DEADLINE,
    );
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(report["members"], 60);
    for k in [
        "lost_added",
        "duplicate_added",
        "lost_removed",
        "duplicate_removed",
    ] {
        assert_eq!(report[k], 0, "{k}: {report}");
    }
    assert_eq!(report["member_added_ms"]["n"], 60);
    assert_eq!(report["member_removed_ms"]["n"], 60);
    assert!(
        report["member_added_ms"]["p99"].as_f64().unwrap()
            >= report["member_added_ms"]["p50"].as_f64().unwrap()
    );
    assert!(report["server"]["peak_rss_kb"].as_u64().unwrap() > 0);
    // Each member sees the later joiners arrive and the later leavers go: 60·59 frames at least.
    assert!(report["frames_received_by_members"].as_u64().unwrap() >= 60 * 59);
}

#[test]
fn bench_refuses_non_loopback_targets() {
    let out = run_bounded(
        &[
            "bench",
            "presence",
            "--url",
            "ws://203.0.113.1:6001",
            "--key",
            "k",
            "--secret",
            "s",
        ],
        BENCH_DEADLINE,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

#[test]
fn idle_and_broadcast_benches_report_and_lose_nothing() {
    let server = ServerProcess::start(&[]);
    let pid = server.child.id().to_string();
    let out = run_bounded(
        &[
            "bench",
            "idle",
            "--url",
            &server.url(),
            "--key",
            KEY,
            "--connections",
            "200",
            "--server-pid",
            &pid,
            "--json",
        ],
        BENCH_DEADLINE,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let idle: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(idle["connections"], 200);
    assert!(
        idle["server_rss_after_kb"].as_u64().unwrap()
            >= idle["server_rss_before_kb"].as_u64().unwrap()
    );

    let out = run_bounded(
        &[
            "bench",
            "broadcast",
            "--url",
            &server.url(),
            "--app-id",
            ID,
            "--key",
            KEY,
            "--secret",
            SECRET,
            "--subscribers",
            "50",
            "--rate",
            "20",
            "--seconds",
            "1",
            "--payload-bytes",
            "100",
            "--stalled",
            "1",
            "--json",
        ],
        BENCH_DEADLINE,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(b["events"], 20);
    assert_eq!(b["deliveries"], 20 * 50);
    assert_eq!(b["lost"], 0);
    assert_eq!(b["duplicates"], 0);
    assert_eq!(b["latency_ms"]["n"], 1000);
    assert_eq!(b["stalled_subscribers"], 1);
    assert!(
        b["slow_client_disconnects"].is_u64(),
        "whosin reports its slow-client count: {b}"
    );
}

#[test]
fn rooms_bench_runs_several_channels_at_once() {
    let server = ServerProcess::start(&[]);
    let out = run_bounded(
        &[
            "bench",
            "rooms",
            "--url",
            &server.url(),
            "--key",
            KEY,
            "--secret",
            SECRET,
            "--channels",
            "5",
            "--members",
            "12",
            "--batch",
            "4",
            "--timeout",
            "60",
            "--json",
        ],
        BENCH_DEADLINE,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["member_added_ms"]["n"], 60);
    assert_eq!(r["member_removed_ms"]["n"], 60);
    assert_eq!(
        (r["lost"].as_u64(), r["duplicate"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn repeat_bench_reports_memory_and_that_everyone_is_still_served() {
    let server = ServerProcess::start(&[]);
    let out = run_bounded(
        &[
            "bench",
            "repeat",
            "--url",
            &server.url(),
            "--key",
            KEY,
            "--secret",
            SECRET,
            "--members",
            "40",
            "--repeats",
            "300",
            "--json",
            "--server-pid",
            &server.child.id().to_string(),
        ],
        BENCH_DEADLINE,
    );
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(report["scenario"], "repeat");
    let before = report["server_rss_before_kb"].as_u64().unwrap();
    let peak = report["server_rss_peak_kb"].as_u64().unwrap();
    assert!(before > 0 && peak >= before, "{report}");
    // The newcomer's member_added reached every member (and its roster itself).
    assert!(
        report["frames_to_members_after_a_new_join"]
            .as_u64()
            .unwrap()
            >= 40,
        "{report}"
    );
}
