//! The API's abuse limits: a request body cap, and a token bucket per caller (its
//! `Authorization` header, kept only as a hash; or, without one, its address), answered
//! with 429 and `Retry-After` when empty. Health, metrics and the static pages are not
//! counted; a login counts as ten requests (by address: it has no credentials yet), which
//! slows password guessing and bounds the argon2 work one address can ask for.

use super::ApiError;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use switchboard_protocol::ratelimit::TokenBucket;

/// Callers remembered at most; past it, the ones with full buckets are forgotten.
const CALLERS_MAX: usize = 100_000;
/// A login (or refresh) costs this many requests: each verifies a password with argon2,
/// tens of milliseconds of CPU, and guessing passwords is what a flood of them is for.
const LOGIN_COST: u32 = 10;

/// Requests per second and at once per caller.
#[derive(Debug)]
pub struct ApiLimits {
    rate_per_sec: f64,
    burst: f64,
    epoch: Instant,
    callers: Mutex<HashMap<[u8; 16], TokenBucket>>,
}

impl ApiLimits {
    /// `rate_per_sec` 0: no limit.
    pub fn new(rate_per_sec: f64, burst: f64) -> Arc<Self> {
        Arc::new(Self {
            rate_per_sec,
            burst: burst.max(1.0),
            epoch: Instant::now(),
            callers: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `caller` may make a request costing `cost` now.
    fn allow(&self, caller: [u8; 16], cost: u32) -> bool {
        if self.rate_per_sec <= 0.0 {
            return true;
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        let mut callers = self.callers.lock().unwrap_or_else(|p| p.into_inner());
        if callers.len() >= CALLERS_MAX && !callers.contains_key(&caller) {
            // Callers whose bucket has refilled are as good as new: forget them.
            let (rate, burst) = (self.rate_per_sec, self.burst);
            callers.retain(|_, b| !b.is_full(now, rate, burst));
        }
        let bucket = callers
            .entry(caller)
            .or_insert_with(|| TokenBucket::new(self.burst, now));
        // Never more than a whole burst, or a small burst would refuse every login.
        let cost = cost.min(self.burst as u32).max(1);
        bucket.try_take_n(now, self.rate_per_sec, self.burst, cost)
    }
}

/// Who a request counts against: its credentials, or else its address.
fn caller(req: &Request) -> [u8; 16] {
    let mut h = Sha256::new();
    match req.headers().get(header::AUTHORIZATION) {
        Some(auth) => {
            h.update(b"auth:");
            h.update(auth.as_bytes());
        }
        None => {
            h.update(b"addr:");
            let ip = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string());
            h.update(ip.unwrap_or_default().as_bytes());
        }
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize()[..16]);
    out
}

/// Refuses a caller over its rate with 429 (the API's error shape) and `Retry-After: 1`.
pub async fn rate_limit(
    State(limits): State<Arc<ApiLimits>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    let counted = path.starts_with("/api/v1/") && path != "/api/v1/openapi.json";
    let cost = if path.starts_with("/api/v1/auth/") {
        LOGIN_COST
    } else {
        1
    };
    if !counted || limits.allow(caller(&req), cost) {
        return next.run(req).await;
    }
    metrics::counter!("bridge_api_rate_limited_total").increment(1);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many requests from this caller; retry after a second",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_has_its_own_bucket() {
        let l = ApiLimits::new(1.0, 3.0);
        let (a, b) = ([1u8; 16], [2u8; 16]);
        assert_eq!((0..5).filter(|_| l.allow(a, 1)).count(), 3);
        assert!(l.allow(b, 1), "another caller is not held back");
        assert!(ApiLimits::new(0.0, 1.0).allow(a, 1), "0: no limit");
        // A login costs ten: a burst of 25 holds two, and nothing is taken by a refusal.
        let l = ApiLimits::new(1.0, 25.0);
        assert_eq!((0..5).filter(|_| l.allow(a, LOGIN_COST)).count(), 2);
        assert_eq!((0..10).filter(|_| l.allow(a, 1)).count(), 5);
        // With a burst under a login's cost, a login takes the whole burst, not forever.
        let l = ApiLimits::new(1.0, 3.0);
        assert!(l.allow(a, LOGIN_COST));
        assert!(!l.allow(a, 1));
    }
}
