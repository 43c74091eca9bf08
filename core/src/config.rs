//! The settings the core needs, with the defaults the gateway documents.

use std::time::Duration;

/// The kind of client, from `?client=` on the upgrade URL. Sets the idle deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientKind {
    Web,
    Mobile,
    Api,
}

impl ClientKind {
    pub const ALL: [ClientKind; 3] = [Self::Web, Self::Mobile, Self::Api];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "web" => Some(Self::Web),
            "mobile" => Some(Self::Mobile),
            "api" => Some(Self::Api),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Mobile => "mobile",
            Self::Api => "api",
        }
    }
}

/// What a visitor is told by default when no agent is online.
pub const DEFAULT_OFFLINE_TEXT: &str =
    "No agent is online right now. Leave your message here: we will answer as soon as we are back.";

/// Core behaviour settings. Validated by the gateway's config loader.
#[derive(Clone, Debug, PartialEq)]
pub struct CoreConfig {
    /// Most open conversations an agent is given at once.
    pub agent_capacity: u32,
    /// Recent messages kept per conversation for resume.
    pub window: usize,
    /// Recent client message ids remembered per conversation for dedupe.
    pub dedupe_window: usize,
    /// Idle deadline per client kind (web, mobile, api).
    pub idle_web: Duration,
    pub idle_mobile: Duration,
    pub idle_api: Duration,
    /// Sustained client frames per second per connection, and the burst allowed above it.
    pub rate_per_sec: f64,
    pub rate_burst: f64,
    /// Bytes queued towards one connection before it is closed as a slow consumer.
    pub max_outbox_bytes: usize,
    /// Lifetime of a visitor token, in seconds.
    pub visitor_token_ttl_s: u64,
    /// How often queued visitors get position updates, at most.
    pub queue_update_interval: Duration,
    /// Acks wait for the storage bridge (true when one is configured).
    pub durable: bool,
    /// Messages per shard sent to storage and not yet confirmed before new ones are refused
    /// with `overloaded`.
    pub max_unconfirmed: usize,
    /// Most messages one `history` request returns.
    pub history_max: u32,
    /// Most stored messages fetched per page of a `resume` reaching past the window.
    pub resume_fetch_max: u32,
    /// Seqs a home shard leases from the store at a time: seqs are handed out only below a
    /// durable lease, so after a crash the next seq is above every seq anyone saw.
    pub seq_lease: u64,
    /// A conversation nobody wrote in for this long is closed (frees its agent's place and
    /// its memory). `None`: never.
    pub conversation_idle_close: Option<Duration>,
    /// What a visitor is told when no agent is online (its message waits for one).
    pub offline_text: String,
    /// A conversation its newly assigned agent has not answered within this long goes to
    /// another agent with room (checked again each period until one has). `None`: never.
    pub reroute_after: Option<Duration>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            agent_capacity: 10,
            window: 256,
            dedupe_window: 1024,
            idle_web: Duration::from_secs(60),
            idle_mobile: Duration::from_secs(120),
            idle_api: Duration::from_secs(300),
            rate_per_sec: 20.0,
            rate_burst: 40.0,
            max_outbox_bytes: 256 * 1024,
            visitor_token_ttl_s: 30 * 24 * 3600,
            queue_update_interval: Duration::from_millis(500),
            durable: false,
            max_unconfirmed: 100_000,
            history_max: 200,
            resume_fetch_max: 1000,
            seq_lease: 128,
            conversation_idle_close: Some(Duration::from_secs(30 * 60)),
            offline_text: DEFAULT_OFFLINE_TEXT.into(),
            reroute_after: None,
        }
    }
}

impl CoreConfig {
    pub fn idle_deadline(&self, kind: ClientKind) -> Duration {
        match kind {
            ClientKind::Web => self.idle_web,
            ClientKind::Mobile => self.idle_mobile,
            ClientKind::Api => self.idle_api,
        }
    }
}
