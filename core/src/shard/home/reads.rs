//! The home role's reads: a resume replayed page by page (from the store while it reaches
//! past the window, then from the window), each page asked when the connection has read
//! the last, and `history` answered from the window and the store, cut to a page.
//!
//! A page is about a quarter of `max_outbox_bytes`, so that a page and live traffic fit in a
//! connection's queue: a backlog of any length never closes a client as a slow consumer,
//! and never sits whole in the gateway's memory.

use super::{page_budget, HomeRole};
use crate::conn::ConnKey;
use crate::conversation::msg_frame;
use crate::messages::{ConnMsg, ReplayNext};
use crate::persist::ReadPage;
use crate::routing::ShardId;
use crate::shard::home::reply;
use crate::shard::shared::Shared;
use bytes::Bytes;
use switchboard_protocol::bridge::StoredMessage;
use switchboard_protocol::server::{encode, ServerFrame};
use switchboard_protocol::{ConvId, ErrorCode};

/// What a store read was for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wait {
    /// A page of a replay reaching past the window (`upto`: the window's oldest seq when
    /// asked): stored messages after `next.after`, then on from there.
    Resume {
        from: ShardId,
        conn: ConnKey,
        conv: ConvId,
        next: ReplayNext,
        upto: u64,
    },
    /// A client's `history` request.
    History {
        from: ShardId,
        conn: ConnKey,
        conv: ConvId,
        before: u64,
        limit: u32,
    },
}

impl HomeRole {
    /// Sends `conn` the next page of its replay of `conv`, after `next.after`: from the store
    /// while that is older than the window, then from the window. The last page ends with
    /// `resumed`, and the connection is live from then on.
    pub(super) fn replay_from(
        &mut self,
        sh: &mut Shared,
        from: ShardId,
        conn: ConnKey,
        conv: ConvId,
        next: ReplayNext,
    ) {
        let Some(c) = self.convs.get(&conv) else {
            return;
        };
        let head = c.head_seq();
        let oldest = c.oldest_kept().unwrap_or(head + 1);
        let budget = page_budget(sh);
        if let Some(link) = self
            .store
            .as_mut()
            .filter(|_| !c.window_reaches(next.after))
        {
            // Older than the window: read the store first. The connection stays pending on
            // its shard until its replay is over.
            let wait = Wait::Resume {
                from,
                conn,
                conv,
                next,
                upto: oldest,
            };
            let limit = sh.cfg.resume_fetch_max;
            link.read(wait, conv, next.after, oldest, limit, true, budget);
            return;
        }
        // Without a store, what left the window is gone: say so.
        let lost = self.store.is_none() && !c.window_reaches(next.after);
        let (frames, more) = c.window_page(next.after, budget);
        let next = ReplayNext {
            after: more.unwrap_or(head),
            replayed: next.replayed + frames.len() as u32,
            complete: next.complete && !lost,
            chain: next.chain,
        };
        match more {
            Some(_) => reply::replay_page(sh, from, conn, conv, frames, next),
            None => reply::replay(sh, from, conn, conv, frames, head, next, c.is_closed()),
        }
    }

    /// A page of stored messages for a replay came (`None`: the read failed).
    fn resume_page(
        &mut self,
        sh: &mut Shared,
        (from, conn, conv, next, upto): (ShardId, ConnKey, ConvId, ReplayNext, u64),
        page: Option<ReadPage>,
    ) {
        let Some(page) = page else {
            // What the store had is skipped (the client learns it from `complete`); the
            // window follows.
            let next = ReplayNext {
                after: next.after.max(upto.saturating_sub(1)),
                complete: false,
                ..next
            };
            return self.replay_from(sh, from, conn, conv, next);
        };
        let last = page.messages.last().map(|m| m.seq);
        // With no more stored before the window's oldest as it was, go on from there.
        let after = match (last, page.more) {
            (Some(last), true) => last,
            (last, _) => last
                .unwrap_or(0)
                .max(upto.saturating_sub(1))
                .max(next.after),
        };
        if page.messages.is_empty() {
            return self.replay_from(sh, from, conn, conv, ReplayNext { after, ..next });
        }
        let frames: Vec<Bytes> = page
            .messages
            .iter()
            .map(|m| msg_frame(conv, m.seq, &m.sender, &m.cid, &m.body, m.ts))
            .collect();
        let next = ReplayNext {
            after,
            replayed: next.replayed + frames.len() as u32,
            ..next
        };
        reply::replay_page(sh, from, conn, conv, frames, next);
    }

    /// Completes a store read: a page of a replay, or a `history` request.
    pub(super) fn finish_read(&mut self, sh: &mut Shared, wait: Wait, page: Option<ReadPage>) {
        match wait {
            Wait::Resume {
                from,
                conn,
                conv,
                next,
                upto,
            } => self.resume_page(sh, (from, conn, conv, next, upto), page),
            Wait::History { .. } => match page {
                Some(p) => self.answer_history(sh, wait, Some((p.messages, p.more))),
                None => {
                    let Wait::History { from, conn, .. } = wait else {
                        unreachable!("matched above")
                    };
                    let message = "storage unavailable; try again";
                    reply::error(sh, from, conn, ErrorCode::Overloaded, message, None);
                }
            },
        }
    }

    /// Answers a `history` request: `stored`, a page from the store (and whether it has
    /// older ones), or `None` when the window alone answers.
    pub(super) fn answer_history(
        &mut self,
        sh: &mut Shared,
        wait: Wait,
        stored: Option<(Vec<StoredMessage>, bool)>,
    ) {
        let Wait::History {
            from,
            conn,
            conv,
            before,
            limit,
        } = wait
        else {
            return;
        };
        let Some(c) = self.convs.get(&conv) else {
            return;
        };
        let (items, complete) = c.history_page(stored, before, limit, page_budget(sh));
        let frame = encode(&ServerFrame::History {
            conv,
            messages: items,
            complete,
        });
        sh.send(from, ConnMsg::ToConn { conn, frame });
    }
}
