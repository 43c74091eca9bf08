//! The home role's side of the AI layer: what the storage bridge's plugins decided about a
//! visitor message ([`Assist`]) becomes a bot message in the conversation, a draft or labels
//! for its agent, and hand-offs and priorities for the dispatcher.
//!
//! The gateway, not the bridge, decides whether the bot may speak: a reply becomes a `msg`
//! from the bot only while the dispatcher has left the conversation with the bot
//! (`with_bot`); once an agent has it, the same text is a draft only the agent sees, and
//! while it waits in the queue it is dropped. So a late or confused decision can never talk
//! over a human.

use super::HomeRole;
use crate::conversation::Posted;
use crate::messages::DispatchMsg;
use crate::shard::home::reply;
use crate::shard::shared::Shared;
use switchboard_protocol::bridge::Assist;
use switchboard_protocol::server::{encode, ServerFrame, BOT_ID};
use switchboard_protocol::ConvId;

/// The cid of the bot's reply to visitor message `seq`: a resent decision (after the link
/// came back) is recognised and not posted twice.
fn bot_cid(seq: u64) -> String {
    format!("ai-{seq}")
}

impl HomeRole {
    /// The AI layer's decision about visitor message `seq` of `conv`.
    pub(super) fn assist(&mut self, sh: &mut Shared, conv: ConvId, seq: u64, a: Assist) {
        let Some(c) = self.convs.get_mut(&conv).filter(|c| !c.is_closed()) else {
            // Closed, or no longer in memory: the decision is moot.
            sh.stats.assists_dropped += 1;
            return;
        };
        let changed = c.notes_mut().merge(&a);
        let assigned = c.agent().is_some();
        let with_bot = c.with_bot();
        let by = if a.by.is_empty() { "bot" } else { &a.by };
        let mut drafts = Vec::new();
        match a.reply {
            Some(text) if with_bot => self.post_bot(sh, conv, seq, &text),
            Some(text) if assigned => drafts.push(text),
            Some(_) => sh.stats.assists_dropped += 1,
            None => {}
        }
        match a.draft {
            Some(text) if assigned => drafts.push(text),
            Some(_) => sh.stats.assists_dropped += 1,
            None => {}
        }
        let subscribers = self.convs[&conv].subscribers().to_vec();
        for body in drafts {
            sh.stats.drafts += 1;
            let frame = encode(&ServerFrame::Draft {
                conv,
                seq,
                body: body.into(),
                by: by.into(),
            });
            reply::to_agents(sh, conv, &subscribers, frame);
        }
        let notes = self.convs[&conv].notes().cloned().unwrap_or_default();
        if assigned {
            if changed {
                let frame = encode(&ServerFrame::Labels {
                    conv,
                    labels: notes.labels,
                    priority: notes.priority,
                    reason: notes.reason.map(Into::into),
                });
                reply::to_agents(sh, conv, &subscribers, frame);
            }
            return;
        }
        let priority = notes.priority.unwrap_or(0);
        if a.handoff.is_some() {
            // A team the AI layer named (label `team`) takes it, unless the visitor's entry
            // named one already.
            let team = notes
                .labels
                .get("team")
                .filter(|t| switchboard_protocol::token::is_team(t))
                .cloned();
            let msg = DispatchMsg::Handoff {
                conv,
                priority,
                team,
            };
            sh.send(sh.dispatcher(), msg);
        } else if a.priority.is_some() {
            sh.send(sh.dispatcher(), DispatchMsg::Prioritize { conv, priority });
        }
    }

    /// Sequences, stores and delivers the bot's reply to visitor message `seq`, to every
    /// subscriber (the visitor included). Not acked: nobody sent it over a connection.
    fn post_bot(&mut self, sh: &mut Shared, conv: ConvId, seq: u64, text: &str) {
        if self.store_behind(sh) {
            sh.stats.assists_dropped += 1;
            return;
        }
        let cid = bot_cid(seq);
        let ts = sh.now.unix_ms;
        let c = self.convs.get_mut(&conv).expect("caller checked");
        let posted = c.post_bot(&cid, text, ts);
        match self.after_post(sh, conv, posted, BOT_ID.into(), &cid, text, ts, None) {
            Posted::New { .. } => sh.stats.bot_replies += 1,
            Posted::NoLease => sh.stats.assists_dropped += 1,
            Posted::Duplicate { .. } => {}
        }
    }
}
