//! The API's abuse limits: a request body cap, and a token bucket per caller (its
//! `Authorization` header, kept only as a hash; or, without one, its address), answered
//! with 429 and `Retry-After` when empty. Health, metrics and the static pages are not
//! counted; logins are (by address), which also slows password guessing.

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

    /// Whether `caller` may make a request now.
    fn allow(&self, caller: [u8; 16]) -> bool {
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
        callers
            .entry(caller)
            .or_insert_with(|| TokenBucket::new(self.burst, now))
            .try_take(now, self.rate_per_sec, self.burst)
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
    if !counted || limits.allow(caller(&req)) {
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
        assert_eq!((0..5).filter(|_| l.allow(a)).count(), 3);
        assert!(l.allow(b), "another caller is not held back");
        assert!(ApiLimits::new(0.0, 1.0).allow(a), "0: no limit");
    }
}
