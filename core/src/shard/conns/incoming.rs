//! What reaches the connection role from conversations' home shards and the dispatcher
//! ([`ConnMsg`]): frames for its connections (one, a conversation's to every local
//! subscriber, a replay page), assignments, lookup answers; and the next page of a paged
//! replay once a connection has read the last.

use super::table::Lookup;
use super::ConnRole;
use crate::conn::ConnKey;
use crate::messages::{ConnMsg, HomeMsg};
use crate::routing::ShardId;
use crate::shard::shared::Shared;
use bytes::Bytes;
use switchboard_protocol::client::ClientFrame;
use switchboard_protocol::server::{encode, ServerFrame};
use switchboard_protocol::{ConvId, ParticipantId};

impl ConnRole {
    /// `key` has written everything queued for it: the next page of a paged replay, if one
    /// waits.
    pub fn on_drained(&mut self, sh: &mut Shared, key: ConnKey) {
        let Some(c) = self.conn_mut(key) else { return };
        c.io.drain_wanted = false;
        let Some((conv, next)) = c.replays.as_mut().and_then(|r| r.ask_next()) else {
            return;
        };
        let who = c.who.clone();
        let msg = HomeMsg::ReplayMore {
            conv,
            conn: key,
            who,
            observer: crate::messages::Watch::of(c.supervisor, c.site()),
            next,
        };
        sh.send(sh.home(conv), msg);
    }

    /// A message for this shard's connections.
    pub fn handle(&mut self, sh: &mut Shared, from: ShardId, msg: ConnMsg) {
        match msg {
            ConnMsg::OpenConvIs { conn, conv } => {
                let Some(c) = self.conn_mut(conn) else { return };
                let parked = match std::mem::replace(&mut c.lookup, Lookup::Done) {
                    Lookup::Asked(parked) => parked,
                    _ => Vec::new(),
                };
                if let (Some(conv), None) = (conv, c.visitor_conv) {
                    // Back in it, live from its newest message: `resumed` says which and
                    // up to where (`history` reads back).
                    self.on_frame(
                        sh,
                        conn,
                        ClientFrame::Resume {
                            conv,
                            last_seq: u64::MAX,
                        },
                    );
                }
                for frame in parked {
                    self.on_frame(sh, conn, frame);
                }
            }

            ConnMsg::ToConn { conn, frame } => self.push(sh, conn, frame),
            ConnMsg::Deliver {
                conv,
                frame,
                exclude,
                closes,
            } => self.deliver(sh, from, conv, frame, exclude, closes),
            ConnMsg::Replay {
                conv,
                conn,
                frames,
                ok,
                more,
                chain,
            } => {
                let Some(c) = self.conn_mut(conn) else { return };
                if !c.replays().page_came(conv, chain, more) {
                    // A page of a resume this connection has since replaced: dropped.
                    c.drain_if_a_page_waits();
                    return;
                }
                match more {
                    // One page of more: the next is asked once this one is read.
                    Some(_) => {}
                    None if ok => {
                        let list = self.conv_subs.entry(conv).or_default();
                        if !list.contains(&conn) {
                            list.push(conn);
                        }
                    }
                    None => c.leave(conv),
                }
                for f in frames {
                    self.push(sh, conn, f);
                }
                if let Some(c) = self.conn_mut(conn) {
                    c.drain_if_a_page_waits();
                }
            }
            ConnMsg::ToAgent { agent, frame } => {
                // Devices are told; told of an assignment, each attaches with `resume`, so
                // that a device that connected at any moment gets every message once (see
                // docs/protocol.md).
                let devices = self.agents.get(&agent).cloned().unwrap_or_default();
                for key in devices {
                    self.push(sh, key, frame.clone());
                }
            }
            ConnMsg::AgentLeft { conv, agent } => self.agent_left(sh, conv, &agent),
            ConnMsg::Reannounce => self.reannounce(sh),
            ConnMsg::Moved { conv } => self.conv_moved(conv),
            ConnMsg::DeliverToAgents { conv, frame } => {
                let agents: Vec<ConnKey> = self
                    .conv_subs
                    .get(&conv)
                    .into_iter()
                    .flatten()
                    .copied()
                    .filter(|&k| {
                        self.table
                            .get(k)
                            .is_some_and(|c| matches!(c.who, ParticipantId::Agent(_)))
                    })
                    .collect();
                for key in agents {
                    self.push(sh, key, frame.clone());
                }
            }
            ConnMsg::AgentConvs { conn, convs } => {
                for (conv, visitor) in convs {
                    let frame = ServerFrame::Assigned {
                        conv,
                        visitor,
                        reason: None,
                        labels: Default::default(),
                        priority: None,
                        context: Default::default(),
                    };
                    self.push(sh, conn, encode(&frame));
                }
            }
        }
    }

    /// On a connection's shard: hand a conversation frame to each local subscriber.
    fn deliver(
        &mut self,
        sh: &mut Shared,
        _from: ShardId,
        conv: ConvId,
        frame: Bytes,
        exclude: Option<(ShardId, ConnKey)>,
        closes: bool,
    ) {
        // The list is taken out for the loop and put back (no copy per message).
        let Some(list) = (if closes {
            self.conv_subs.remove(&conv)
        } else {
            self.conv_subs.get_mut(&conv).map(std::mem::take)
        }) else {
            return;
        };
        for &key in &list {
            if exclude != Some((sh.id, key)) {
                self.push(sh, key, frame.clone());
            }
            if closes {
                if let Some(c) = self.conn_mut(key) {
                    c.leave(conv);
                }
            }
        }
        if !closes {
            if let Some(slot) = self.conv_subs.get_mut(&conv) {
                *slot = list;
            }
        }
    }
}
