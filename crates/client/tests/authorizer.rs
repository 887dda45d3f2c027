//! The HTTP authorizer against a stand-in third-party auth endpoint: the
//! form pusher-js sends, extra params and headers, JSON and JSONP answers,
//! and refusals that say so.

mod common;

use common::*;
use std::sync::Arc;
use whosin_client::{AuthError, Authorizer, HttpAuthorizer};

fn endpoint() -> Handler {
    Arc::new(|r: &Request| {
        if r.method != "POST" {
            return Some((405, "POST only".into()));
        }
        if r.header("content-type") != Some("application/x-www-form-urlencoded") {
            return Some((400, "form expected".into()));
        }
        if r.header("authorization") != Some("Bearer t0k") {
            return Some((403, r#"{"error":"no token"}"#.into()));
        }
        let form: Vec<(&str, &str)> = r
            .body
            .split('&')
            .filter_map(|p| p.split_once('='))
            .collect();
        let get = |k: &str| {
            form.iter()
                .find(|(a, _)| *a == k)
                .map(|(_, v)| *v)
                .unwrap_or("")
        };
        let answer = format!(
            r#"{{"auth":"key:{}-{}-{}"}}"#,
            get("socket_id"),
            get("channel_name"),
            get("room")
        );
        if r.path.contains("jsonp") {
            Some((200, format!("Pusher.auth_callbacks['1']({answer});")))
        } else {
            Some((200, answer))
        }
    })
}

#[tokio::test]
async fn sends_the_pusher_js_form_with_params_and_headers() {
    let s = StandIn::start(endpoint()).await;
    let a = HttpAuthorizer::new(s.url("/auth"))
        .param("room", "blue")
        .header("Authorization", "Bearer t0k");
    let auth = a.authorize("12.34", "private-x").await.unwrap();
    assert_eq!(auth.auth, "key:12.34-private-x-blue");
    let jsonp = HttpAuthorizer::new(s.url("/auth-jsonp"))
        .param("room", "red")
        .header("Authorization", "Bearer t0k");
    assert_eq!(
        jsonp.authorize("1.2", "private-y").await.unwrap().auth,
        "key:1.2-private-y-red"
    );
}

#[tokio::test]
async fn refusals_and_outages_are_errors_that_say_so() {
    let s = StandIn::start(endpoint()).await;
    let err = HttpAuthorizer::new(s.url("/auth"))
        .authorize("1.2", "private-x")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AuthError::Refused {
            channel: "private-x".into(),
            status: 403,
            message: "no token".into()
        }
    );
    assert!(err.to_string().contains("refused private-x with HTTP 403"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = HttpAuthorizer::new(format!("http://{closed}/auth"))
        .authorize("1.2", "private-x")
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Unreachable { .. }), "{err:?}");
}
