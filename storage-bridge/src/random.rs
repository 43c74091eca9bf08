//! Random ids for what the API makes (keys, webhooks, canned replies, deliveries): a
//! letter saying what it is, then 16 hex digits from the operating system's generator.

use rand_core::RngCore;

/// `prefix` and 64 random bits in hex, e.g. `w3f2a...`.
pub fn id(prefix: char) -> String {
    let mut b = [0u8; 8];
    rand_core::OsRng.fill_bytes(&mut b);
    format!("{prefix}{}", hex(&b))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
