//! Error codes carried in `error` frames and the WebSocket close codes the gateway uses.
//!
//! An error frame leaves the connection open; a close code ends it. Both lists are mirrored
//! in `docs/protocol.md`, and a test checks the document names every code.

/// The `code` of an `error` frame. The connection stays open after each of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The text frame is not valid JSON, or not a JSON object.
    BadJson,
    /// The frame has no string `type`, or one this server does not know.
    UnknownType,
    /// A field the frame type requires is absent.
    MissingField,
    /// A field is present but of the wrong type, empty, or too long.
    InvalidField,
    /// A binary WebSocket message: the protocol is JSON text only.
    BinaryUnsupported,
    /// The connection sent faster than its message rate limit; the frame was dropped.
    RateLimited,
    /// The conversation does not exist, or the sender is not one of its participants.
    NotInConversation,
    /// A visitor sent `typing`/`read` before opening a conversation.
    NoConversation,
    /// The conversation has been closed.
    ConversationClosed,
    /// The sender's role may not do this (for example a visitor closing a conversation).
    Forbidden,
    /// The server cannot take the message right now; resend it later with the same `cid`.
    Overloaded,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 11] = [
        Self::BadJson,
        Self::UnknownType,
        Self::MissingField,
        Self::InvalidField,
        Self::BinaryUnsupported,
        Self::RateLimited,
        Self::NotInConversation,
        Self::NoConversation,
        Self::ConversationClosed,
        Self::Forbidden,
        Self::Overloaded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::UnknownType => "unknown_type",
            Self::MissingField => "missing_field",
            Self::InvalidField => "invalid_field",
            Self::BinaryUnsupported => "binary_unsupported",
            Self::RateLimited => "rate_limited",
            Self::NotInConversation => "not_in_conversation",
            Self::NoConversation => "no_conversation",
            Self::ConversationClosed => "conversation_closed",
            Self::Forbidden => "forbidden",
            Self::Overloaded => "overloaded",
        }
    }
}

/// WebSocket close codes sent by the gateway (RFC 6455 section 7.4 plus our 4xxx range).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: the peer closed, we answer in kind.
    Normal,
    /// 1001: the gateway is shutting down (SIGTERM), or a conversation the connection
    /// follows moved to another node of the cluster; reconnect elsewhere or later.
    GoingAway,
    /// 1002: a WebSocket protocol violation (bad framing, unmasked client frame...).
    ProtocolError,
    /// 1007: a text frame that is not valid UTF-8.
    InvalidPayload,
    /// 1008: repeated abuse after rate-limit errors.
    PolicyViolation,
    /// 1009: a message larger than the configured maximum.
    MessageTooBig,
    /// 1011: an unexpected server condition.
    InternalError,
    /// 4000: no frame (not even a pong) within the idle deadline for this client type.
    IdleTimeout,
    /// 4001: the client did not read its frames fast enough; its outbound queue overflowed.
    SlowConsumer,
    /// 4002: the agent's account was disabled.
    AccountDisabled,
}

impl CloseCode {
    pub const ALL: [CloseCode; 10] = [
        Self::Normal,
        Self::GoingAway,
        Self::ProtocolError,
        Self::InvalidPayload,
        Self::PolicyViolation,
        Self::MessageTooBig,
        Self::InternalError,
        Self::IdleTimeout,
        Self::SlowConsumer,
        Self::AccountDisabled,
    ];

    pub fn code(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::GoingAway => 1001,
            Self::ProtocolError => 1002,
            Self::InvalidPayload => 1007,
            Self::PolicyViolation => 1008,
            Self::MessageTooBig => 1009,
            Self::InternalError => 1011,
            Self::IdleTimeout => 4000,
            Self::SlowConsumer => 4001,
            Self::AccountDisabled => 4002,
        }
    }

    /// Short reason text sent in the close frame, also the `reason` label of the
    /// `chat_connections_closed_total` metric.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::GoingAway => "shutdown",
            Self::ProtocolError => "protocol_error",
            Self::InvalidPayload => "invalid_utf8",
            Self::PolicyViolation => "policy",
            Self::MessageTooBig => "too_big",
            Self::InternalError => "internal",
            Self::IdleTimeout => "idle_timeout",
            Self::SlowConsumer => "slow_consumer",
            Self::AccountDisabled => "account_disabled",
        }
    }
}
