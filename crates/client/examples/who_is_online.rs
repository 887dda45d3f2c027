//! Prints who is online in a presence channel, live.
//!
//! ```sh
//! whosin serve --app-id 1 --app-key demo --app-secret s3cret &
//! cargo run -p whosin-client --example who_is_online -- ws://127.0.0.1:6001 demo \
//!     http://127.0.0.1:6001/pusher/auth
//! ```
//!
//! Arguments: server URL, app key, auth endpoint URL. The auth endpoint gives
//! this visitor a name and records its IP; the example then follows the
//! channel until Ctrl-C, through reconnects.

use whosin_client::{Client, ConnectionState, Endpoint, Event, HttpAuthorizer, Member};

/// "name — ip", the tutorial's line.
fn label(m: &Member) -> String {
    let field = |k: &str| m.info[k].as_str().unwrap_or("?").to_owned();
    format!("{} — {}", field("name"), field("ip"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: who_is_online WS_URL APP_KEY AUTH_ENDPOINT";
    let url = args.next().ok_or(usage)?;
    let key = args.next().ok_or(usage)?;
    let auth = args.next().ok_or(usage)?;

    let endpoint = Endpoint::parse(&url, &key)?;
    let visitor_id = whosin_client::identity::new_visitor_id();
    let authorizer = HttpAuthorizer::new(auth).param("visitor_id", visitor_id);
    let (client, mut events) = Client::builder(endpoint).authorizer(authorizer).connect();
    client.subscribe("presence-whosin");

    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => { client.close(); break; }
            event = events.recv() => match event {
                None => break,
                Some(Event::State(ConnectionState::Disconnected { reason })) => {
                    eprintln!("stopped: {reason}");
                    break;
                }
                Some(Event::State(state)) => eprintln!("[{state:?}]"),
                Some(Event::Snapshot { members, me, .. }) => {
                    println!("{} online", members.len());
                    for m in &members {
                        let you = if me.as_ref().is_some_and(|me| me.id == m.id) { " (you)" } else { "" };
                        println!("  {}{you}", label(m));
                    }
                }
                Some(Event::MemberAdded { member, count, .. }) => println!("+ {} ({count} online)", label(&member)),
                Some(Event::MemberRemoved { member, count, .. }) => println!("- {} ({count} online)", label(&member)),
                Some(Event::SubscriptionFailed { message, .. }) => {
                    eprintln!("cannot join: {message}");
                    break;
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}
