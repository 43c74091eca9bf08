//! `loadtest`: drive a Switchboard gateway (or any RFC 6455 server) and print figures.
//!
//! Scenarios are bounded in count and time. Large runs use `--procs K` worker processes
//! (each has its own open-files limit) and `--source` address ranges (each address has its
//! own ~28k ephemeral ports); the coordinator merges the workers' histograms, prints a
//! progress line each second, a table at the end, and with `--json FILE` the full result.
//! `--slo` turns objectives into the exit status (0 met, 1 missed or messages lost, 2 error).

mod chat;
mod connect;
mod coord;
mod history;
mod ping;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "loadtest",
    version,
    about = "Load generator for the Switchboard gateway",
    after_help = "Exit status: 0 all good, 1 an --slo objective missed (or messages lost or duplicated), 2 bad arguments or a failed run."
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// For wss:// URLs: the CA certificate (PEM) the server's certificate is checked
    /// against (only it is trusted).
    #[arg(long, global = true)]
    ca: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Scenario {
    /// Ramp to N connections at R/s, hold them idle for T, report handshake latency and the
    /// server's memory per connection.
    Connect(connect::ConnectArgs),
    /// A customer-service mix: agents and visitors exchanging messages; ack and relay
    /// latency, stored messages per second, lost and duplicated messages.
    #[command(after_help = format!("--slo figures: {}", chat::FIGURES))]
    Chat(chat::ChatArgs),
    /// The chat mix with visitors that disconnect and resume every few seconds; proves
    /// nothing is missed or duplicated across reconnects.
    #[command(after_help = format!("--slo figures: {}", chat::FIGURES))]
    Churn(chat::ChurnArgs),
    /// Read-path load: WebSocket `history` pages and the bridge's HTTP history API.
    #[command(after_help = format!("--slo figures: {}", history::FIGURES))]
    History(history::HistoryArgs),
    /// WebSocket Ping/Pong round trips against any RFC 6455 server.
    #[command(after_help = format!("--slo figures: {}", ping::FIGURES))]
    Ping(ping::PingArgs),
    #[command(hide = true, name = "__chat_worker")]
    ChatWorker(chat::ChatWorkerArgs),
    #[command(hide = true, name = "__history_worker")]
    HistoryWorker(history::HistoryWorkerArgs),
    #[command(hide = true, name = "__ping_worker")]
    PingWorker(ping::PingWorkerArgs),
    #[command(hide = true, name = "__worker")]
    Worker(connect::WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(ca) = &cli.ca {
        // Read by every connection of this process and of the workers it starts.
        std::env::set_var(coord::CA_ENV, ca);
    }
    let result = match cli.scenario {
        Scenario::Connect(a) => connect::coordinate(a),
        Scenario::Worker(a) => connect::work(a),
        Scenario::Chat(a) => chat::coordinate(a),
        Scenario::Churn(a) => chat::coordinate_churn(a),
        Scenario::History(a) => history::coordinate(a),
        Scenario::Ping(a) => ping::coordinate(a),
        Scenario::ChatWorker(a) => chat::work(a),
        Scenario::HistoryWorker(a) => history::work(a),
        Scenario::PingWorker(a) => ping::work(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::from(2)
        }
    }
}
