//! WebSocket close codes of the Pusher protocol and what each asks a client to do.

/// A close code the server sends, with the client behaviour pusher-js follows.
///
/// The ranges carry the meaning: 4000–4099 are final (do not reconnect),
/// 4100–4199 ask for a reconnect with backoff, 4200–4299 for an immediate one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CloseCode {
    /// The app key in the URL is not known to this server.
    UnknownAppKey = 4001,
    /// The app is disabled in the server's configuration.
    AppDisabled = 4003,
    /// The app's connection quota is used up.
    OverConnectionQuota = 4004,
    /// The path was not `/app/{key}` or the protocol version is unsupported.
    UnsupportedProtocol = 4007,
    /// The connection was refused by the application (e.g. terminated by the REST API).
    Unauthorized = 4009,
    /// The server is over capacity, or this client could not keep up: retry later.
    OverCapacity = 4100,
    /// Generic reconnect, sent on graceful shutdown.
    Reconnect = 4200,
    /// The client did not answer our ping in time.
    PongNotReceived = 4201,
    /// Closed for being idle too long.
    ClosedAfterInactivity = 4202,
    /// The client sent client events faster than allowed.
    ClientEventRateLimit = 4301,
    /// A subscribe over the per-connection channel limit (sent in
    /// `pusher:error`, the connection stays).
    OverChannelLimit = 4302,
}

/// What a client should do when it sees a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconnectAdvice {
    /// Stop: retrying would fail the same way.
    Stop,
    /// Reconnect, backing off.
    Backoff,
    /// Reconnect at once.
    Immediately,
}

impl CloseCode {
    /// The numeric code as sent on the wire.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// A short human reason, sent as the close frame's reason text.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::UnknownAppKey => "App key not in this server's configuration",
            CloseCode::AppDisabled => "App disabled",
            CloseCode::OverConnectionQuota => "Over connection quota",
            CloseCode::UnsupportedProtocol => "Unsupported protocol version or path",
            CloseCode::Unauthorized => "Connection terminated",
            CloseCode::OverCapacity => "Client too slow or server over capacity, retry later",
            CloseCode::Reconnect => "Server shutting down, please reconnect",
            CloseCode::PongNotReceived => "Pong reply not received",
            CloseCode::ClosedAfterInactivity => "Closed after inactivity",
            CloseCode::ClientEventRateLimit => "Client event rate limit exceeded",
            CloseCode::OverChannelLimit => "Too many channels on one connection",
        }
    }

    /// Every code this crate names.
    pub const ALL: [CloseCode; 11] = [
        CloseCode::UnknownAppKey,
        CloseCode::AppDisabled,
        CloseCode::OverConnectionQuota,
        CloseCode::UnsupportedProtocol,
        CloseCode::Unauthorized,
        CloseCode::OverCapacity,
        CloseCode::Reconnect,
        CloseCode::PongNotReceived,
        CloseCode::ClosedAfterInactivity,
        CloseCode::ClientEventRateLimit,
        CloseCode::OverChannelLimit,
    ];

    /// The named code for a number, if it is one of ours.
    pub fn from_code(code: u16) -> Option<CloseCode> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The advice for any numeric close code, by Pusher's ranges.
    pub fn advice_for(code: u16) -> ReconnectAdvice {
        match code {
            4000..=4099 => ReconnectAdvice::Stop,
            4100..=4199 => ReconnectAdvice::Backoff,
            4200..=4299 => ReconnectAdvice::Immediately,
            _ => ReconnectAdvice::Backoff,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_give_advice() {
        assert_eq!(CloseCode::advice_for(4001), ReconnectAdvice::Stop);
        assert_eq!(CloseCode::advice_for(4009), ReconnectAdvice::Stop);
        assert_eq!(CloseCode::advice_for(4100), ReconnectAdvice::Backoff);
        assert_eq!(CloseCode::advice_for(4200), ReconnectAdvice::Immediately);
        assert_eq!(CloseCode::advice_for(4201), ReconnectAdvice::Immediately);
        assert_eq!(CloseCode::advice_for(4301), ReconnectAdvice::Backoff);
        assert_eq!(CloseCode::advice_for(1006), ReconnectAdvice::Backoff);
    }

    #[test]
    fn codes_are_the_documented_numbers() {
        assert_eq!(CloseCode::UnknownAppKey.code(), 4001);
        assert_eq!(CloseCode::OverConnectionQuota.code(), 4004);
        assert_eq!(CloseCode::Unauthorized.code(), 4009);
        assert_eq!(CloseCode::OverCapacity.code(), 4100);
        assert_eq!(CloseCode::Reconnect.code(), 4200);
        assert_eq!(CloseCode::PongNotReceived.code(), 4201);
        assert_eq!(CloseCode::ClientEventRateLimit.code(), 4301);
        // Reasons must fit a close frame (123 bytes); numbers round-trip.
        for c in CloseCode::ALL {
            assert!(c.reason().len() <= 123);
            assert_eq!(CloseCode::from_code(c.code()), Some(c));
        }
        assert_eq!(CloseCode::from_code(1000), None);
    }
}
