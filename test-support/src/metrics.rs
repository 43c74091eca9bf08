//! Prometheus text as a process under test serves it on `/metrics`: one scrape, and the
//! value of a metric in it.

use crate::http;
use std::collections::BTreeSet;

/// One scrape of a `/metrics` page. Its `Debug` and `Display` are the page itself, so a
/// failed wait or assertion shows it as served.
#[derive(Clone, PartialEq)]
pub struct Metrics(pub String);

impl Metrics {
    /// `GET /metrics` on `addr`; panics unless it answers 200.
    pub fn scrape(addr: &str) -> Metrics {
        let r = http::get(addr, "/metrics", &[]);
        assert_eq!(r.status, 200, "GET {addr}/metrics: {}", r.head);
        Metrics(r.text())
    }

    /// The sum over the series of metric `name` (exactly: `name{...}` or `name value`) whose
    /// line contains every one of `needles` (such as `role="agent"`); 0 when there is none.
    pub fn value(&self, name: &str, needles: &[&str]) -> f64 {
        self.0
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Every metric name with at least one series (histogram series under their base name).
    pub fn names(&self) -> BTreeSet<String> {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let name = l.split(['{', ' ']).next().unwrap_or_default();
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name)
                    .to_string()
            })
            .collect()
    }

    /// Whether the text contains `needle` (a whole line, a `# TYPE` comment, a prefix).
    pub fn contains(&self, needle: &str) -> bool {
        self.0.contains(needle)
    }
}

impl std::fmt::Display for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\n{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    const PAGE: &str = "\
# TYPE chat_active_connections gauge
chat_active_connections{role=\"visitor\",client=\"web\",shard=\"0\"} 2
chat_active_connections{role=\"agent\",client=\"web\",shard=\"1\"} 1
chat_active_connections_peak 9
chat_messages_relayed_total 5
chat_message_process_seconds_bucket{le=\"0.001\"} 4
chat_message_process_seconds_count 4
";

    #[test]
    fn a_value_sums_the_matching_series_of_exactly_that_name() {
        let m = Metrics(PAGE.into());
        assert_eq!(m.value("chat_active_connections", &[]), 3.0);
        assert_eq!(
            m.value(
                "chat_active_connections",
                &["role=\"agent\"", "shard=\"1\""]
            ),
            1.0
        );
        assert_eq!(m.value("chat_messages_relayed_total", &[]), 5.0);
        assert_eq!(m.value("chat_nothing", &[]), 0.0);
    }

    #[test]
    fn names_fold_histogram_series_into_their_base_name() {
        let names = Metrics(PAGE.into()).names();
        assert!(names.contains("chat_message_process_seconds"), "{names:?}");
        assert!(!names.iter().any(|n| n.ends_with("_bucket")));
        assert_eq!(names.len(), 4);
    }
}
