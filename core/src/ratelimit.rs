//! The token bucket of per-connection rate limits, shared with the bridge's API limits.

pub use switchboard_protocol::ratelimit::TokenBucket;
