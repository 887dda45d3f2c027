//! The golden event stream (`tests/golden/presence-events.json`): server
//! frames in, the JSON events out. The page's transport is checked against
//! the same file (`tests/node/golden-events.test.mjs`), so the terminal, the
//! desktop and the page cannot disagree on what a roster change looks like.

use serde_json::Value;
use whosin_client::{ChannelAuth, Event, JsonEvent, Output, Session};

#[test]
fn the_session_reports_the_golden_events() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/golden/presence-events.json"
    );
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let channel = golden["channel"].as_str().unwrap();
    let me = golden["me"].as_str().unwrap();

    let mut session = Session::new(true);
    session.subscribe(channel);
    session.connected("1.1");
    let data = serde_json::json!({"user_id": me}).to_string();
    session.authorized(
        "1.1",
        channel,
        Ok(ChannelAuth {
            auth: "k:sig".into(),
            channel_data: Some(data),
        }),
    );
    for step in golden["steps"].as_array().unwrap() {
        // Pusher double-encodes data: the frame carries it as a string.
        let mut frame = step["frame"].clone();
        frame["data"] = Value::String(frame["data"].to_string());
        let got: Vec<Value> = session
            .on_frame(&frame.to_string())
            .into_iter()
            .filter_map(|o| match o {
                Output::Emit(e) => Some(json(&e)),
                _ => None,
            })
            .collect();
        assert_eq!(&Value::Array(got), &step["events"], "{}", step["what"]);
    }
}

fn json(e: &Event) -> Value {
    serde_json::to_value(JsonEvent::from(e)).unwrap()
}
