//! Switchboard's load generator. The binary (`loadtest`) runs scenarios against a gateway;
//! this library holds the parts with logic worth testing on their own.
//!
//! - [`sources`]: source-address ranges (`127.0.0.2-127.0.0.40`) to pass the ephemeral-port limit.
//! - [`hist`]: latency histograms that cross process boundaries and merge.
//! - [`procfs`]: a server process's RSS and CPU time, from `/proc`.
//! - [`slo`]: `--slo` objectives, parsed and judged.
//! - [`ledger`]: which messages were acked, lost or duplicated.
//! - [`host`]: host facts recorded with results; the client's own CPU.
//!
//! Threading model: the coordinator is a plain process that spawns worker processes (each
//! with its own open-files limit) and merges what they report over stdout as JSON lines.

pub mod hist;
pub mod host;
pub mod ledger;
pub mod procfs;
pub mod slo;
pub mod sources;
