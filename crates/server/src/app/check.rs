//! What a subscription or a client event must satisfy before it touches any
//! state: a valid channel name, a signature made with this app's secret,
//! well-formed presence data within the size limits.

use crate::config::AppConfig;
use crate::metrics::Metrics;
use whosin_protocol::frame::PresenceDataError;
use whosin_protocol::limits::MAX_EVENT_NAME_LEN;
use whosin_protocol::sign::verify_channel_auth;
use whosin_protocol::{ChannelKind, ChannelName, PresenceData, SubscribeData};

/// Why a subscription was refused; sent as `pusher:subscription_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeError {
    /// HTTP-like status: 400 bad request, 401 bad signature, 403 full, 413 too large.
    pub status: u16,
    /// What went wrong and what to do.
    pub message: String,
    /// The per-address limit that refused it, if one did (counted and
    /// logged by [`crate::admission::Gate::note`]).
    pub limit: Option<crate::admission::Limit>,
}

impl SubscribeError {
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Self {
        SubscribeError {
            status,
            message: message.into(),
            limit: None,
        }
    }

    /// The subscriber's address already has `max` users in the channel.
    pub(crate) fn per_address(channel: &str, max: usize) -> Self {
        SubscribeError {
            limit: Some(crate::admission::Limit::PresenceUsers),
            ..SubscribeError::new(
                429,
                format!("{channel} already has {max} visitors from your address, the most allowed from one address"),
            )
        }
    }

    /// The channel is at its member cap.
    pub(crate) fn full(channel: &str, max: usize) -> Self {
        SubscribeError::new(
            403,
            format!("{channel} is full: it holds the maximum of {max} members"),
        )
    }
}

/// Why a client event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientEventError {
    /// The app has client events off (the default).
    #[error("client events are not enabled for this app; its operator can turn them on (--enable-client-events, or client_events = true in the app's TOML)")]
    Disabled,
    /// The event name is over Pusher's limit.
    #[error("client event name is {len} characters; the limit is {max}")]
    NameTooLong {
        /// Characters sent.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a private or presence channel.
    #[error("client events are only allowed on private and presence channels, not {0:?}")]
    PublicChannel(String),
    /// The sender is not subscribed to the channel.
    #[error("subscribe to {0:?} before sending client events to it")]
    NotSubscribed(String),
    /// The payload is over the app's event size limit.
    #[error("client event data is {len} bytes; the limit is {max}")]
    TooLarge {
        /// Bytes sent.
        len: usize,
        /// The app's limit.
        max: usize,
    },
}

/// A subscription that passed every check.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub kind: ChannelKind,
    /// The verified presence data, on presence channels.
    pub presence: Option<PresenceData>,
}

/// Checks a subscription request from the connection `socket_id`.
pub(crate) fn subscription(
    config: &AppConfig,
    metrics: &Metrics,
    socket_id: &str,
    sub: &SubscribeData,
) -> Result<Admitted, SubscribeError> {
    let name = ChannelName::parse(&sub.channel)
        .map_err(|e| SubscribeError::new(400, format!("invalid channel name: {e}")))?;
    let kind = name.kind();
    if !kind.needs_auth() {
        return Ok(Admitted {
            kind,
            presence: None,
        });
    }
    let auth = sub.auth.as_deref().ok_or_else(|| {
        SubscribeError::new(
            401,
            format!("{name} needs an auth signature from your auth endpoint"),
        )
    })?;
    if kind == ChannelKind::Presence && sub.channel_data.is_none() {
        return Err(SubscribeError::new(
            400,
            "presence channels need channel_data with a user_id",
        ));
    }
    if let Err(e) = verify_channel_auth(
        &config.key,
        &config.secret,
        socket_id,
        name.as_str(),
        sub.channel_data.as_deref(),
        auth,
    ) {
        Metrics::inc(&metrics.auth_failures);
        return Err(SubscribeError::new(
            401,
            format!("{e}: check that your auth endpoint signs with this app's key and secret"),
        ));
    }
    if kind != ChannelKind::Presence {
        return Ok(Admitted {
            kind,
            presence: None,
        });
    }
    let data = sub.channel_data.as_deref().unwrap_or_default();
    let pd = PresenceData::parse(data, config.max_user_info_bytes).map_err(|e| {
        let status = match e {
            PresenceDataError::UserInfoTooLarge { .. } => 413,
            _ => 400,
        };
        SubscribeError::new(status, e.to_string())
    })?;
    Ok(Admitted {
        kind,
        presence: Some(pd),
    })
}

/// Checks a client event before it is relayed: enabled for the app, the
/// name's length, the channel kind and the size.
pub(crate) fn client_event(
    config: &AppConfig,
    event: &str,
    channel: &str,
    data: &str,
) -> Result<(), ClientEventError> {
    if !config.client_events {
        return Err(ClientEventError::Disabled);
    }
    let len = event.chars().count();
    if len > MAX_EVENT_NAME_LEN {
        return Err(ClientEventError::NameTooLong {
            len,
            max: MAX_EVENT_NAME_LEN,
        });
    }
    if !ChannelKind::of(channel).allows_client_events() {
        return Err(ClientEventError::PublicChannel(channel.to_owned()));
    }
    if data.len() > config.max_event_data_bytes {
        return Err(ClientEventError::TooLarge {
            len: data.len(),
            max: config.max_event_data_bytes,
        });
    }
    Ok(())
}
