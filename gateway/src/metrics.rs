//! Prometheus metrics. The recorder is global and installed once in `main`, before shards
//! start; each shard keeps its own metric handles (atomics) labelled with its shard id.
//!
//! Hot-path counts live in the core's [`ShardStats`] as plain integers and are published
//! here once a second, so a relayed message costs no metric call; only the processing-time
//! histogram is recorded per message.

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Gauge, Histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use switchboard_core::{ClientKind, ShardStats};

pub const PROCESS_SECONDS: &str = "chat_message_process_seconds";
pub const STORAGE_CONFIRM_SECONDS: &str = "chat_storage_confirm_seconds";

/// Installs the global recorder; returns the handle that renders `/metrics`.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let buckets = [
        2e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 5e-2, 0.25,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(PROCESS_SECONDS.into()), &buckets)?
        .set_buckets_for_metric(
            Matcher::Full(STORAGE_CONFIRM_SECONDS.into()),
            &[
                1e-3, 2.5e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ],
        )?
        .install_recorder()?;
    describe_gauge!(
        "chat_active_connections",
        "Open WebSocket connections by role, client type and shard"
    );
    describe_histogram!(
        PROCESS_SECONDS,
        Unit::Seconds,
        "Time a shard spends handling one client frame"
    );
    describe_counter!(
        "chat_messages_relayed_total",
        "Chat messages sequenced by their home shard"
    );
    describe_counter!(
        "chat_duplicate_messages_total",
        "Resent messages recognised by cid and not delivered again"
    );
    describe_counter!("chat_frames_sent_total", "Frames queued to connections");
    describe_counter!("chat_error_frames_total", "Error frames sent to clients");
    describe_counter!(
        "chat_rate_limited_total",
        "Client frames refused by the rate limit"
    );
    describe_counter!(
        "chat_connections_closed_total",
        "Closed connections by reason"
    );
    describe_counter!(
        "chat_handshakes_refused_total",
        "HTTP upgrades refused, by status code"
    );
    describe_counter!(
        "chat_accept_errors_total",
        "accept(2) failures, by kind (emfile: the open-files limit)"
    );
    describe_gauge!("chat_queue_length", "Conversations waiting for an agent");
    describe_histogram!(
        STORAGE_CONFIRM_SECONDS,
        Unit::Seconds,
        "Time from a persist batch leaving a shard to its confirmation by the storage bridge: what acks wait for"
    );
    describe_gauge!(
        "process_open_fds",
        "Open file descriptors of the gateway process"
    );
    describe_gauge!(
        "process_max_fds",
        "The gateway's open-files limit (RLIMIT_NOFILE soft)"
    );
    describe_gauge!(
        "chat_agents_online",
        "Agents with at least one connected device"
    );
    describe_gauge!(
        "chat_open_conversations",
        "Open conversations by home shard"
    );
    describe_gauge!(
        "chat_storage_unconfirmed",
        "Messages sent to the storage bridge and not yet confirmed (acks waiting)"
    );
    describe_counter!(
        "chat_overloaded_total",
        "Messages refused with `overloaded` because storage was too far behind"
    );
    describe_counter!(
        "chat_conversations_idle_closed_total",
        "Conversations closed because nobody wrote in them for conversation_idle_close_s"
    );
    describe_counter!(
        "chat_conversations_rerouted_total",
        "Conversations handed to another agent because theirs did not answer within reroute_after_s"
    );
    describe_gauge!(
        "chat_conversations_with_bot",
        "Conversations the bot has (it answers them until it hands them over)"
    );
    describe_counter!(
        "chat_bot_replies_total",
        "Bot replies posted as messages in conversations"
    );
    describe_counter!("chat_drafts_total", "Bot drafts sent to agents");
    describe_counter!(
        "chat_assists_dropped_total",
        "AI decisions dropped: their conversation closed, waiting in the queue, or storage behind"
    );
    describe_gauge!(
        "chat_cross_shard_pending",
        "Messages waiting to be sent to other shards"
    );
    Ok(handle)
}

/// One shard's metric handles.
pub struct ShardMetrics {
    shard: String,
    connections: Vec<(usize, usize, Gauge)>,
    pub process: Histogram,
    relayed: Counter,
    duplicates: Counter,
    frames: Counter,
    errors: Counter,
    rate_limited: Counter,
    queue: Gauge,
    agents: Gauge,
    open_convs: Gauge,
    pub cross_pending: Gauge,
    unconfirmed: Gauge,
    overloaded: Counter,
    idle_closed: Counter,
    rerouted: Counter,
    with_bot: Gauge,
    bot_replies: Counter,
    drafts: Counter,
    assists_dropped: Counter,
    fenced: Counter,
    /// In a cluster: whether the bridge says Redis answers, and the live nodes.
    pub cluster_redis_up: Gauge,
    pub cluster_nodes: Gauge,
    last: ShardStats,
}

impl ShardMetrics {
    pub fn new(shard: u32) -> Self {
        let s = shard.to_string();
        // Series that appear only when something happens start at zero, so alerts on their
        // rate see a baseline (and dashboards a flat line) from the first scrape.
        for code in switchboard_protocol::CloseCode::ALL {
            counter!("chat_connections_closed_total", "reason" => code.reason(), "shard" => s.clone()).absolute(0);
        }
        for kind in ["emfile", "nomem", "other"] {
            counter!("chat_accept_errors_total", "kind" => kind, "shard" => s.clone()).absolute(0);
        }
        for status in [400u16, 401, 403, 404, 405, 408, 426, 431] {
            counter!("chat_handshakes_refused_total", "status" => status.to_string(), "shard" => s.clone()).absolute(0);
        }
        let mut connections = Vec::new();
        for (r, role) in ["visitor", "agent"].iter().enumerate() {
            for (c, kind) in ClientKind::ALL.iter().enumerate() {
                let g = gauge!("chat_active_connections", "role" => *role, "client" => kind.as_str(), "shard" => s.clone());
                connections.push((r, c, g));
            }
        }
        Self {
            connections,
            process: histogram!(PROCESS_SECONDS, "shard" => s.clone()),
            relayed: counter!("chat_messages_relayed_total", "shard" => s.clone()),
            duplicates: counter!("chat_duplicate_messages_total", "shard" => s.clone()),
            frames: counter!("chat_frames_sent_total", "shard" => s.clone()),
            errors: counter!("chat_error_frames_total", "shard" => s.clone()),
            rate_limited: counter!("chat_rate_limited_total", "shard" => s.clone()),
            queue: gauge!("chat_queue_length", "shard" => s.clone()),
            agents: gauge!("chat_agents_online", "shard" => s.clone()),
            open_convs: gauge!("chat_open_conversations", "shard" => s.clone()),
            cross_pending: gauge!("chat_cross_shard_pending", "shard" => s.clone()),
            unconfirmed: gauge!("chat_storage_unconfirmed", "shard" => s.clone()),
            overloaded: counter!("chat_overloaded_total", "shard" => s.clone()),
            idle_closed: counter!("chat_conversations_idle_closed_total", "shard" => s.clone()),
            rerouted: counter!("chat_conversations_rerouted_total", "shard" => s.clone()),
            with_bot: gauge!("chat_conversations_with_bot", "shard" => s.clone()),
            bot_replies: counter!("chat_bot_replies_total", "shard" => s.clone()),
            drafts: counter!("chat_drafts_total", "shard" => s.clone()),
            assists_dropped: counter!("chat_assists_dropped_total", "shard" => s.clone()),
            fenced: counter!("chat_conversations_fenced_total", "shard" => s.clone()),
            cluster_redis_up: gauge!("chat_cluster_redis_up", "shard" => s.clone()),
            cluster_nodes: gauge!("chat_cluster_nodes", "shard" => s.clone()),
            shard: s,
            last: ShardStats::default(),
        }
    }

    /// Publishes the core's counters (as deltas) and gauges.
    pub fn publish(&mut self, stats: &ShardStats) {
        for (r, c, g) in &self.connections {
            g.set(stats.connections[*r][*c] as f64);
        }
        self.relayed
            .increment(stats.messages_posted - self.last.messages_posted);
        self.duplicates
            .increment(stats.duplicates - self.last.duplicates);
        self.frames
            .increment(stats.frames_queued - self.last.frames_queued);
        self.errors
            .increment(stats.errors_sent - self.last.errors_sent);
        self.rate_limited
            .increment(stats.rate_limited - self.last.rate_limited);
        self.queue.set(stats.queue_len as f64);
        self.agents.set(stats.agents_online as f64);
        self.open_convs.set(stats.open_conversations as f64);
        self.unconfirmed.set(stats.unconfirmed as f64);
        self.overloaded
            .increment(stats.overloaded - self.last.overloaded);
        self.idle_closed
            .increment(stats.idle_closed - self.last.idle_closed);
        self.rerouted.increment(stats.rerouted - self.last.rerouted);
        self.with_bot.set(stats.with_bot as f64);
        self.bot_replies
            .increment(stats.bot_replies - self.last.bot_replies);
        self.drafts.increment(stats.drafts - self.last.drafts);
        self.assists_dropped
            .increment(stats.assists_dropped - self.last.assists_dropped);
        self.fenced.increment(stats.fenced - self.last.fenced);
        self.last = stats.clone();
    }

    pub fn closed(&self, reason: &'static str) {
        counter!("chat_connections_closed_total", "reason" => reason, "shard" => self.shard.clone()).increment(1);
    }

    pub fn refused(&self, status: u16) {
        counter!("chat_handshakes_refused_total", "status" => status.to_string(), "shard" => self.shard.clone()).increment(1);
    }

    /// A connection to the TLS listener that never became TLS: `plaintext` (it spoke plain
    /// HTTP), `handshake` (the handshake failed), `timeout`.
    pub fn tls_refused(&self, why: &'static str) {
        counter!("chat_tls_refused_total", "reason" => why, "shard" => self.shard.clone())
            .increment(1);
    }

    /// A connection closed at accept: its source address was over a limit (`open`,
    /// `unfinished`, `rate`).
    pub fn source_refused(&self, why: &'static str) {
        counter!("chat_source_refused_total", "reason" => why, "shard" => self.shard.clone())
            .increment(1);
    }

    pub fn accept_error(&self, kind: &'static str) {
        counter!("chat_accept_errors_total", "kind" => kind, "shard" => self.shard.clone())
            .increment(1);
    }
}

/// Sets `process_open_fds` and `process_max_fds` from /proc/self. Called when `/metrics`
/// is scraped (not on a timer): counting 100k descriptors costs a few milliseconds, once
/// per scrape. Alerts compare the two to warn before the gateway stops accepting.
pub fn publish_fd_usage() {
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        gauge!("process_open_fds").set(dir.count() as f64);
    }
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| {
                    l["Max open files".len()..]
                        .split_whitespace()
                        .next()
                        .map(str::to_owned)
                })
        });
    if let Some(Ok(n)) = limit.map(|s| s.parse::<f64>()) {
        gauge!("process_max_fds").set(n);
    }
}
