//! The home role's side of the storage bridge: writing its requests, taking its answers
//! (confirmed batches settle acks and leases, loaded conversations release what waited
//! for them, read pages go on to `reads`), and what happens when the link drops and
//! comes back. The rules about requests themselves are [`StoreLink`]'s.

use super::{HomeRole, Listed};
use crate::conversation::Conversation;
use crate::messages::DispatchMsg;
use crate::persist::{Resolved, StoreLink};
use crate::shard::home::reply;
use crate::shard::shared::Shared;
use switchboard_protocol::bridge::{BridgeMsg, ConvEvent};
use switchboard_protocol::ErrorCode;

impl HomeRole {
    /// Writes the requests for the storage bridge made since the last call to `out`. Gives
    /// back the answers of those that could not be sent, for [`Self::on_bridge`].
    pub fn write_bridge_requests(
        &mut self,
        sh: &mut Shared,
        out: &mut Vec<u8>,
        now_us: u64,
    ) -> Vec<BridgeMsg> {
        let Some(link) = self.store.as_mut() else {
            return Vec::new();
        };
        let failed = link.write_requests(out, now_us);
        sh.stats.unconfirmed = link.unconfirmed() as u64;
        failed
    }

    /// A new link to the bridge: every request in flight is written again, then new ones.
    pub fn bridge_relinked(&mut self, out: &mut Vec<u8>, now_us: u64) -> Vec<BridgeMsg> {
        self.store
            .as_mut()
            .map(|l| l.relink(out, now_us))
            .unwrap_or_default()
    }

    /// The link to the bridge is gone: the answers of the requests given up on.
    pub fn bridge_link_lost(&mut self) -> Vec<BridgeMsg> {
        self.store
            .as_mut()
            .map(StoreLink::link_lost)
            .unwrap_or_default()
    }

    /// When request `req` was written, if it is in flight.
    pub fn bridge_sent_at_us(&self, req: u64) -> Option<u64> {
        self.store.as_ref()?.sent_at_us(req)
    }

    /// Requests in flight to the bridge.
    pub fn bridge_in_flight(&self) -> usize {
        self.store.as_ref().map_or(0, StoreLink::in_flight)
    }

    pub fn has_bridge_requests(&self) -> bool {
        self.store.as_ref().is_some_and(StoreLink::has_requests)
    }

    /// An answer from the storage bridge. Gives back a page of the start-up listing of open
    /// conversations when that is what came (an empty last one if it failed), for the
    /// dispatcher.
    pub fn on_bridge(&mut self, sh: &mut Shared, msg: BridgeMsg) -> Option<Listed> {
        if let BridgeMsg::Assist { conv, seq, assist } = msg {
            // Unasked, about a conversation homed here: not the link's business.
            self.assist(sh, conv, seq, assist.bounded());
            return None;
        }
        let link = self.store.as_mut()?;
        let resolved = link.resolve(msg);
        sh.stats.unconfirmed = link.unconfirmed() as u64;
        match resolved {
            Resolved::Nothing => {}
            Resolved::Persist(outcomes) => {
                for o in outcomes {
                    for (conv, upto) in o.leases {
                        if let Some(c) = self.convs.get_mut(&conv) {
                            c.lease_settled(upto, o.ok);
                        }
                    }
                    for (conv, seq) in o.heads {
                        self.settle_acks(sh, conv, seq, o.ok);
                    }
                }
            }
            Resolved::Loaded(conv, info, parked) => {
                if let Some(info) = info {
                    let mut c =
                        Conversation::restore(conv, &info, sh.cfg.window, sh.cfg.dedupe_window);
                    // Idle since its newest stored message (or since now, if it has none).
                    c.touch(match Conversation::last_written_unix_ms(&info) {
                        Some(ts) => sh
                            .now
                            .mono_ms
                            .saturating_sub(sh.now.unix_ms.saturating_sub(ts)),
                        None => sh.now.mono_ms,
                    });
                    if !c.is_closed() {
                        sh.stats.open_conversations += 1;
                        let restore = DispatchMsg::Restore {
                            conv,
                            visitor: c.visitor(),
                            agent: c.agent().cloned(),
                            site: c.site().map(str::to_owned),
                        };
                        sh.send(sh.dispatcher(), restore);
                    }
                    self.convs.insert(conv, c);
                    self.watch_idle(sh, conv);
                }
                for (from, m) in parked {
                    self.handle(sh, from, m);
                }
            }
            Resolved::LoadFailed(_, parked) => {
                for (from, m) in parked {
                    let message = "storage unavailable; try again";
                    reply::refuse(sh, from, &m, ErrorCode::Overloaded, message);
                }
            }
            Resolved::Read(wait, page) => self.finish_read(sh, wait, page),
            Resolved::OpenConvs { convs, done } => {
                let listed = convs.unwrap_or_default();
                for o in &listed {
                    // Its home shard loads it when someone touches it; if nobody does, it
                    // is checked (and loaded) after one idle period.
                    if let Some(idle) = sh.cfg.conversation_idle_close {
                        let due = sh.now.mono_ms + idle.as_millis() as u64;
                        self.conv_idle.schedule(o.conv, due);
                    }
                }
                return Some((listed, done));
            }
        }
        None
    }

    /// A clean stop, once this shard's connections are gone: every conversation hands back
    /// the seqs it leased and did not use, so that the next start goes on where this one
    /// ended instead of skipping past the lease. Messages that still arrive for them (from
    /// other shards' last connections) get `overloaded`.
    pub fn release_leases(&mut self) {
        let Some(link) = self.store.as_mut() else {
            return;
        };
        for (&conv, c) in self.convs.iter_mut() {
            if let Some((at, held)) = c.lease_release() {
                link.event(ConvEvent::SeqRelease { conv, at, held });
            }
        }
    }

    /// Whether the start-up listing of open conversations is asked and not answered yet.
    pub fn is_listing(&self) -> bool {
        self.store.as_ref().is_some_and(StoreLink::is_listing)
    }
}
