//! Folds a batch's conversation events into one row set per table, so a batch costs a
//! fixed number of statements however many conversations it opens, assigns or closes.
//!
//! The fold gives the same end state as applying the events one by one: each kind writes
//! its own columns, so kinds can go in the order opened, leases, assigned, closed, and within a
//! kind the rule of the sequential update decides which event counts: the first `Opened`
//! (later inserts conflict), the last `Assigned` (each overwrites), the first `Closed`
//! (only an open conversation is closed), the highest lease, the newest `last_seen` of a
//! visitor or agent.

use std::collections::HashMap;
use switchboard_protocol::bridge::ConvEvent;
use switchboard_protocol::token::DEFAULT_SITE;
use switchboard_protocol::{ConvId, VisitorId};

/// One batch's events as rows, each key once.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EventRows {
    /// New conversations: (conversation, visitor, opened at, site).
    pub opened: Vec<(ConvId, VisitorId, u64, String)>,
    /// Visitors seen: (visitor, newest timestamp).
    pub visitors: Vec<(VisitorId, u64)>,
    /// Assignments: (conversation, agent, assigned at), the last one per conversation.
    pub assigned: Vec<(ConvId, String, u64)>,
    /// Agents seen: (agent, newest timestamp).
    pub agents: Vec<(String, u64)>,
    /// Closes: (conversation, closed by, closed at), the first one per conversation.
    pub closed: Vec<(ConvId, String, u64)>,
    /// Seq leases: (conversation, the highest lease, its epoch), applied after `opened`.
    pub leases: Vec<(ConvId, u64, u64)>,
    /// Leases handed back by a gateway stopping cleanly: (conversation, its newest seq, the
    /// most it leased), applied after `leases`.
    pub releases: Vec<(ConvId, u64, u64)>,
    /// Visitors' contexts (JSON), in the order said (the last one stays).
    pub contexts: Vec<(ConvId, String)>,
    /// Ratings: (conversation, score, comment, rated at), in the order given.
    pub ratings: Vec<(ConvId, i64, Option<String>, i64)>,
}

/// The statements both stores run for the rare events (contexts, ratings), after the
/// batch's conversations are written.
pub(crate) const CONTEXT_SQL: &str = "UPDATE conversations SET context = $2 WHERE id = $1";
pub(crate) const RATING_SQL: &str = "INSERT INTO ratings (conv, score, comment, rated_at)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (conv) DO UPDATE SET score = excluded.score, comment = excluded.comment,
        rated_at = excluded.rated_at";

/// A context as stored: a JSON object.
pub(crate) fn context_json(context: &std::collections::BTreeMap<String, String>) -> String {
    serde_json::to_string(context).expect("string maps serialise")
}

impl EventRows {
    pub fn fold(events: &[ConvEvent]) -> Self {
        let mut rows = Self::default();
        let mut opened = HashMap::new();
        let mut visitors: HashMap<VisitorId, usize> = HashMap::new();
        let mut assigned = HashMap::new();
        let mut agents: HashMap<&str, usize> = HashMap::new();
        let mut closed = HashMap::new();
        let mut leases: HashMap<ConvId, usize> = HashMap::new();
        for e in events {
            match e {
                ConvEvent::Opened {
                    conv,
                    visitor,
                    ts,
                    lease,
                    site,
                } => {
                    opened.entry(*conv).or_insert_with(|| {
                        let site = site.as_deref().unwrap_or(DEFAULT_SITE).to_owned();
                        rows.opened.push((*conv, *visitor, *ts, site));
                    });
                    if *lease > 0 {
                        highest_lease(&mut rows.leases, &mut leases, *conv, *lease, 0);
                    }
                    newest(&mut rows.visitors, &mut visitors, *visitor, *ts);
                }
                ConvEvent::Assigned { conv, agent, ts } => {
                    match assigned.get(conv) {
                        Some(&i) => rows.assigned[i] = (*conv, agent.clone(), *ts),
                        None => {
                            assigned.insert(*conv, rows.assigned.len());
                            rows.assigned.push((*conv, agent.clone(), *ts));
                        }
                    }
                    match agents.get(agent.as_str()) {
                        Some(&i) => rows.agents[i].1 = rows.agents[i].1.max(*ts),
                        None => {
                            agents.insert(agent, rows.agents.len());
                            rows.agents.push((agent.clone(), *ts));
                        }
                    }
                }
                ConvEvent::Closed { conv, by, ts } => {
                    closed.entry(*conv).or_insert_with(|| {
                        rows.closed.push((*conv, by.clone(), *ts));
                    });
                }
                ConvEvent::SeqLease { conv, upto, epoch } => {
                    highest_lease(&mut rows.leases, &mut leases, *conv, *upto, *epoch)
                }
                ConvEvent::SeqRelease { conv, at, held } => rows.releases.push((*conv, *at, *held)),
                ConvEvent::Context { conv, context } => {
                    rows.contexts.push((*conv, context_json(context)))
                }
                ConvEvent::Rated {
                    conv,
                    score,
                    comment,
                    ts,
                } => rows
                    .ratings
                    .push((*conv, i64::from(*score), comment.clone(), *ts as i64)),
            }
        }
        rows
    }
}

/// Keeps one lease per conversation: the highest, with the epoch that asked it.
fn highest_lease(
    rows: &mut Vec<(ConvId, u64, u64)>,
    index: &mut HashMap<ConvId, usize>,
    conv: ConvId,
    upto: u64,
    epoch: u64,
) {
    match index.get(&conv) {
        Some(&i) if rows[i].1 < upto => rows[i] = (conv, upto, epoch),
        Some(_) => {}
        None => {
            index.insert(conv, rows.len());
            rows.push((conv, upto, epoch));
        }
    }
}

fn newest<K: Copy + Eq + std::hash::Hash>(
    rows: &mut Vec<(K, u64)>,
    index: &mut HashMap<K, usize>,
    key: K,
    ts: u64,
) {
    match index.get(&key) {
        Some(&i) => rows[i].1 = rows[i].1.max(ts),
        None => {
            index.insert(key, rows.len());
            rows.push((key, ts));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opened(c: u64, v: u64, ts: u64) -> ConvEvent {
        ConvEvent::Opened {
            conv: ConvId(c),
            visitor: VisitorId(v),
            ts,
            lease: 0,
            site: None,
        }
    }
    fn assigned(c: u64, a: &str, ts: u64) -> ConvEvent {
        ConvEvent::Assigned {
            conv: ConvId(c),
            agent: a.into(),
            ts,
        }
    }
    fn closed(c: u64, by: &str, ts: u64) -> ConvEvent {
        ConvEvent::Closed {
            conv: ConvId(c),
            by: by.into(),
            ts,
        }
    }

    #[test]
    fn each_key_once_with_the_sequential_winner() {
        let rows = EventRows::fold(&[
            opened(1, 10, 100),
            opened(2, 10, 105),
            opened(1, 11, 110),
            assigned(1, "a1", 120),
            assigned(2, "a1", 90),
            assigned(1, "a2", 130),
            closed(2, "a1", 140),
            closed(2, "v", 150),
        ]);
        assert_eq!(
            rows.opened,
            vec![
                (ConvId(1), VisitorId(10), 100, "default".into()),
                (ConvId(2), VisitorId(10), 105, "default".into())
            ]
        );
        assert_eq!(
            rows.visitors,
            vec![(VisitorId(10), 105), (VisitorId(11), 110)]
        );
        assert_eq!(
            rows.assigned,
            vec![(ConvId(1), "a2".into(), 130), (ConvId(2), "a1".into(), 90)]
        );
        assert_eq!(rows.agents, vec![("a1".into(), 120), ("a2".into(), 130)]);
        assert_eq!(rows.closed, vec![(ConvId(2), "a1".into(), 140)]);
    }

    #[test]
    fn no_events_no_rows() {
        assert_eq!(EventRows::fold(&[]), EventRows::default());
    }
}
