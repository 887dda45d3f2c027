//! Public IP lookup against local stand-ins for the internet services.

mod common;

use common::*;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use whosin_client::{IpLookup, IpLookupError};

fn services() -> Handler {
    Arc::new(|r: &Request| match r.path.as_str() {
        "/v4" => Some((200, "203.0.113.7\n".into())),
        "/v6" => Some((200, "2001:db8::1".into())),
        "/500" => Some((500, "oops".into())),
        "/html" => Some((200, "<html>captive portal</html>".into())),
        "/hang" => None,
        _ => Some((404, "no".into())),
    })
}

#[tokio::test]
async fn tries_in_order_validates_and_caches() {
    let s = StandIn::start(services()).await;
    let lookup = IpLookup::new(vec![
        s.url("/500"),
        s.url("/html"),
        s.url("/v4"),
        s.url("/v6"),
    ]);
    assert_eq!(
        lookup.lookup().await.unwrap(),
        "203.0.113.7".parse::<IpAddr>().unwrap()
    );
    assert_eq!(s.hits(), 3, "stops at the first valid answer");
    assert_eq!(
        lookup.lookup().await.unwrap(),
        "203.0.113.7".parse::<IpAddr>().unwrap()
    );
    assert_eq!(s.hits(), 3, "the second lookup is served from the cache");
    lookup.refresh().await.unwrap();
    assert_eq!(s.hits(), 6, "refresh asks again");

    let v6 = IpLookup::new(vec![s.url("/v6")]);
    assert_eq!(
        v6.lookup().await.unwrap(),
        "2001:db8::1".parse::<IpAddr>().unwrap()
    );
}

#[tokio::test]
async fn every_failure_is_reported_and_a_hung_service_times_out() {
    let s = StandIn::start(services()).await;
    let lookup = IpLookup::with_timeout(
        vec![s.url("/hang"), s.url("/500"), s.url("/html")],
        Duration::from_millis(300),
    );
    let started = Instant::now();
    let err = lookup.lookup().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let IpLookupError::AllFailed(list) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(list.len(), 3);
    assert!(list[1].1.contains("500"), "{list:?}");
    assert!(list[2].1.contains("not an IP"), "{list:?}");
    assert!(err.to_string().contains("offline?"));
}

#[tokio::test]
async fn offline_is_a_typed_error() {
    // A port nothing listens on: connection refused, as when offline.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let lookup = IpLookup::new(vec![format!("http://{closed}/ip")]);
    assert!(matches!(
        lookup.lookup().await,
        Err(IpLookupError::AllFailed(_))
    ));
    assert_eq!(
        IpLookup::new(vec![]).lookup().await,
        Err(IpLookupError::Disabled)
    );
}
