//! The server inside the app: with no settings the desktop serves its own
//! whosin on 127.0.0.1, so it works with no account and no network.
//!
//! Port choice: the preferred port (6001) if free; if it is taken by the
//! embedded server of another instance of this install (same app, same
//! secret — checked with a signed REST call, which only the secret's holder
//! can pass), join that one; otherwise a free port.

use crate::settings::EMBEDDED_APP;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use whosin_protocol::sign;
use whosin_server::{AppConfig, Running, ServerConfig, StartError};

/// The embedded server in use.
#[derive(Debug)]
pub struct Embedded {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The server, when this app runs it (`None` when another instance does).
    running: Option<Running>,
}

impl Embedded {
    /// Starts the server, or finds ours already serving, on `preferred`.
    pub async fn ensure(secret: &str, preferred: u16) -> Result<Embedded, String> {
        match start(secret, preferred).await {
            Ok(r) => Ok(Embedded {
                port: r.local_addr().port(),
                running: Some(r),
            }),
            Err(StartError::Bind { .. }) if is_ours(preferred, secret).await => {
                tracing::info!(
                    port = preferred,
                    "joining the embedded server another instance runs"
                );
                Ok(Embedded {
                    port: preferred,
                    running: None,
                })
            }
            Err(StartError::Bind { .. }) => {
                tracing::info!(
                    port = preferred,
                    "port taken by something else; using a free one"
                );
                let r = start(secret, 0).await.map_err(|e| e.to_string())?;
                Ok(Embedded {
                    port: r.local_addr().port(),
                    running: Some(r),
                })
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Whether this app runs the server (rather than joining another's).
    pub fn owned(&self) -> bool {
        self.running.is_some()
    }

    /// The page others on this computer can open.
    pub fn address(&self) -> String {
        format!(
            "Others on this computer can join at http://127.0.0.1:{}/",
            self.port
        )
    }

    /// Stops the server, closing its clients with 4200.
    pub async fn stop(self) {
        if let Some(r) = self.running {
            r.shutdown().await;
        }
    }
}

async fn start(secret: &str, port: u16) -> Result<Running, StartError> {
    let mut config = ServerConfig::single(AppConfig::new(EMBEDDED_APP, EMBEDDED_APP, secret), port);
    config.shutdown_grace = Duration::from_secs(2);
    // Only this computer, and only the server's own page among browser
    // pages: another site open in the user's browser cannot use it.
    config.loopback_only = true;
    whosin_server::start(config).await
}

/// A signed `GET /apps/whosin/channels`: 200 only from a server that holds
/// our secret.
async fn is_ours(port: u16, secret: &str) -> bool {
    let path = format!("/apps/{EMBEDDED_APP}/channels");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let query = sign::rest_query(EMBEDDED_APP, secret, "GET", &path, &[], now);
    let url = format!("http://127.0.0.1:{port}{path}?{query}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    matches!(client.get(url).send().await, Ok(r) if r.status().is_success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_reuses_ours_and_avoids_others() {
        // Find a free port, then take it with our embedded server.
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let first = Embedded::ensure("secret-one", free).await.unwrap();
        assert_eq!(first.port, free);
        assert!(first.owned());
        // A second instance with the same secret joins it.
        let second = Embedded::ensure("secret-one", free).await.unwrap();
        assert_eq!(second.port, free);
        assert!(!second.owned());
        // Another install (another secret) gets a port of its own.
        let other = Embedded::ensure("secret-two", free).await.unwrap();
        assert_ne!(other.port, free);
        assert!(other.owned());
        other.stop().await;
        first.stop().await;
    }
}
