//! `loadtest`: drive a Switchboard gateway (or any RFC 6455 server) and print figures.
//!
//! Scenarios are bounded in count and time. Large runs use `--procs K` worker processes
//! (each has its own open-files limit) and `--source` address ranges (each address has its
//! own ~28k ephemeral ports); the coordinator merges the workers' histograms.

mod chat;
mod connect;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "loadtest",
    version,
    about = "Load generator for the Switchboard gateway"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Ramp to N connections at R/s, hold them idle for T, report handshake latency and the
    /// server's memory per connection.
    Connect(connect::ConnectArgs),
    /// A customer-service mix: agents and visitors exchanging messages; ack and relay
    /// latency, stored messages per second, lost and duplicated messages.
    Chat(chat::ChatArgs),
    /// Internal: one worker process of `chat`.
    #[command(hide = true, name = "__chat_worker")]
    ChatWorker(chat::ChatWorkerArgs),
    /// Internal: one worker process of a scenario.
    #[command(hide = true, name = "__worker")]
    Worker(connect::WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.scenario {
        Scenario::Connect(a) => connect::coordinate(a),
        Scenario::Worker(a) => connect::work(a),
        Scenario::Chat(a) => chat::coordinate(a),
        Scenario::ChatWorker(a) => chat::work(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::from(2)
        }
    }
}
