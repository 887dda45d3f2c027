//! The visitor's public IP, from a list of lookup services tried in order.
//!
//! Offline is normal for a desktop app: every failure is a typed error the
//! app shows and carries on from. A success is cached, so the lookup costs
//! one request per run unless refreshed (e.g. after a network change).

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// The services asked by default, in order.
pub const DEFAULT_ENDPOINTS: [&str; 2] = ["https://ipinfo.io/ip", "https://api.ipify.org"];

/// Why no public IP could be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpLookupError {
    /// No endpoints are configured.
    #[error("IP lookup is turned off (no lookup endpoints)")]
    Disabled,
    /// Every endpoint failed; each failure is listed.
    #[error("could not find your public IP (offline?): {}", .0.iter().map(|(u, e)| format!("{u}: {e}")).collect::<Vec<_>>().join("; "))]
    AllFailed(Vec<(String, String)>),
}

/// Looks up and caches the public IP.
#[derive(Debug)]
pub struct IpLookup {
    endpoints: Vec<String>,
    http: reqwest::Client,
    cached: Mutex<Option<IpAddr>>,
}

impl Default for IpLookup {
    fn default() -> Self {
        IpLookup::new(DEFAULT_ENDPOINTS.iter().map(|s| s.to_string()).collect())
    }
}

impl IpLookup {
    /// A lookup over `endpoints`, each given 3 s.
    pub fn new(endpoints: Vec<String>) -> IpLookup {
        Self::with_timeout(endpoints, Duration::from_secs(3))
    }

    /// A lookup with a per-endpoint timeout.
    pub fn with_timeout(endpoints: Vec<String>, timeout: Duration) -> IpLookup {
        IpLookup {
            endpoints,
            http: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .build()
                .unwrap_or_default(),
            cached: Mutex::new(None),
        }
    }

    /// The cached address, or a fresh lookup.
    pub async fn lookup(&self) -> Result<IpAddr, IpLookupError> {
        if let Some(ip) = *self.cached.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(ip);
        }
        self.refresh().await
    }

    /// Asks the endpoints again, in order, and caches the first valid answer.
    pub async fn refresh(&self) -> Result<IpAddr, IpLookupError> {
        if self.endpoints.is_empty() {
            return Err(IpLookupError::Disabled);
        }
        let mut failures = Vec::new();
        for url in &self.endpoints {
            match self.ask(url).await {
                Ok(ip) => {
                    *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(ip);
                    return Ok(ip);
                }
                Err(e) => {
                    tracing::debug!(%url, error = %e, "IP lookup failed");
                    failures.push((url.clone(), e));
                }
            }
        }
        Err(IpLookupError::AllFailed(failures))
    }

    async fn ask(&self, url: &str) -> Result<IpAddr, String> {
        let resp = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status().as_u16()));
        }
        let body = resp.text().await.map_err(|e| e.to_string())?;
        let text = body.trim();
        text.parse::<IpAddr>().map_err(|_| {
            format!(
                "answer is not an IP address: {:?}",
                text.chars().take(60).collect::<String>()
            )
        })
    }
}
