//! `kernel-tuning`: the host settings a Switchboard gateway (or load generator) needs,
//! checked, shown as a diff, applied with the old values saved, and reverted.
//!
//! The logic works on a [`host::Host`] (where /proc, /sys and the root are), so tests run
//! every step against temporary trees and network namespaces instead of the real host.

pub mod checks;
pub mod cpu;
pub mod host;
pub mod irq;
pub mod profile;
pub mod tuning;
pub mod want;
