//! How the home role answers: an error, an ack or a replay for one connection, and a
//! conversation's frame fanned out once to each shard with subscribers. The role decides
//! what to answer; these build the frames, count them and send them through [`Shared`] as
//! [`ConnMsg`]s. No state of their own.

use crate::conn::ConnKey;
use crate::conversation::{AckWaiter, ConvNotes};
use crate::messages::{ConnMsg, HomeMsg, ReplayNext, Signal};
use crate::routing::ShardId;
use crate::shard::shared::{error_frame, Shared};
use bytes::Bytes;
use switchboard_protocol::server::{encode, ServerFrame};
use switchboard_protocol::{AgentId, ConvId, ErrorCode, ParticipantId, VisitorId};

/// An `error` frame for connection `conn` on shard `to`.
pub(super) fn error(
    sh: &mut Shared,
    to: ShardId,
    conn: ConnKey,
    code: ErrorCode,
    message: &str,
    cid: Option<&str>,
) {
    sh.stats.errors_sent += 1;
    let frame = error_frame(code, message, cid);
    sh.send(to, ConnMsg::ToConn { conn, frame });
}

/// A refused subscription: its error, and the connection is not live in `conv`.
pub(super) fn refuse_subscribe(
    sh: &mut Shared,
    to: ShardId,
    conn: ConnKey,
    conv: ConvId,
    code: ErrorCode,
    message: &str,
    chain: u32,
) {
    sh.stats.errors_sent += 1;
    let frames = vec![error_frame(code, message, None)];
    sh.send(
        to,
        ConnMsg::Replay {
            conv,
            conn,
            frames,
            ok: false,
            more: None,
            chain,
        },
    );
}

/// Answers a parked request that cannot be served.
pub(super) fn refuse(sh: &mut Shared, from: ShardId, msg: &HomeMsg, code: ErrorCode, text: &str) {
    match msg {
        HomeMsg::Post { conn, cid, .. } => error(sh, from, *conn, code, text, Some(cid)),
        HomeMsg::Signal { conn, .. }
        | HomeMsg::Close { conn, .. }
        | HomeMsg::Rate { conn, .. }
        | HomeMsg::History { conn, .. } => error(sh, from, *conn, code, text, None),
        HomeMsg::Api { id, reply, .. } => sh.send(
            *reply,
            crate::messages::ShardMsg::command_done(*id, Some(text)),
        ),
        HomeMsg::Subscribe {
            conv, conn, chain, ..
        } => refuse_subscribe(sh, from, *conn, *conv, code, text, *chain),
        HomeMsg::ReplayMore {
            conv, conn, next, ..
        } => refuse_subscribe(sh, from, *conn, *conv, code, text, next.chain),
        _ => {}
    }
}

/// The frame of a typing signal or read receipt from `who`.
pub(super) fn signal_frame(conv: ConvId, who: &ParticipantId, signal: Signal) -> Bytes {
    let from = who.to_string().into();
    encode(&match signal {
        Signal::Typing => ServerFrame::Typing { conv, from },
        Signal::Read(seq) => ServerFrame::Read { conv, from, seq },
    })
}

/// Tells the shards with devices of `agent` that it has `conv` now, with what the AI layer
/// noted about it.
pub(super) fn agent_assigned(
    sh: &mut Shared,
    agent_shards: &[ShardId],
    conv: ConvId,
    visitor: VisitorId,
    agent: &AgentId,
    notes: Option<&ConvNotes>,
) {
    let frame = encode(&ServerFrame::Assigned {
        conv,
        visitor,
        reason: notes.and_then(|n| n.reason.as_deref()).map(Into::into),
        labels: notes.map(|n| n.labels.clone()).unwrap_or_default(),
        priority: notes.and_then(|n| n.priority),
        context: notes.map(|n| n.context.clone()).unwrap_or_default(),
    });
    for &shard in agent_shards {
        let agent = agent.clone();
        let frame = frame.clone();
        sh.send(shard, ConnMsg::ToAgent { agent, frame });
    }
}

/// A frame for the agents' connections among `subscribers` (drafts, labels): one message to
/// each shard with subscribers, which picks out the agents.
pub(super) fn to_agents(
    sh: &mut Shared,
    conv: ConvId,
    subscribers: &[(ShardId, ConnKey)],
    frame: Bytes,
) {
    for (i, (shard, _)) in subscribers.iter().enumerate() {
        if subscribers[..i].iter().any(|(s, _)| s == shard) {
            continue;
        }
        let frame = frame.clone();
        sh.send(*shard, ConnMsg::DeliverToAgents { conv, frame });
    }
}

/// The `ack` of message `seq` of `conv`, sent by `conn` on shard `to` with `cid`.
pub(super) fn ack(sh: &mut Shared, to: ShardId, conn: ConnKey, conv: ConvId, cid: &str, seq: u64) {
    let frame = encode(&ServerFrame::Ack {
        cid: cid.into(),
        conv,
        seq,
    });
    sh.send(to, ConnMsg::ToConn { conn, frame });
}

/// Acks the store settled: `ack`s when it kept their messages, errors when it failed to.
pub(super) fn settled(sh: &mut Shared, conv: ConvId, waiters: Vec<AckWaiter>, ok: bool) {
    for w in waiters {
        if ok {
            ack(sh, w.shard, w.conn, conv, &w.cid, w.seq);
        } else {
            let message = "not stored; resend with the same cid";
            error(
                sh,
                w.shard,
                w.conn,
                ErrorCode::Overloaded,
                message,
                Some(&w.cid),
            );
        }
    }
}

/// Sends a resumed connection the last page of its replay, closed by `resumed` (`done`
/// counts every page). A conversation that closed while it was replayed ends with the
/// same error a resume of a closed conversation gets, and the connection is not live.
#[allow(clippy::too_many_arguments)]
pub(super) fn replay(
    sh: &mut Shared,
    to: ShardId,
    conn: ConnKey,
    conv: ConvId,
    mut frames: Vec<Bytes>,
    head: u64,
    done: ReplayNext,
    closed: bool,
) {
    frames.push(encode(&ServerFrame::Resumed {
        conv,
        last_seq: head,
        replayed: done.replayed,
        complete: done.complete,
    }));
    if closed {
        sh.stats.errors_sent += 1;
        let message = "conversation is closed";
        frames.push(error_frame(ErrorCode::ConversationClosed, message, None));
    }
    send_replay(sh, to, conn, conv, frames, None, done.chain, !closed);
}

/// Sends a resuming connection one page of its replay; it asks for the next once read.
pub(super) fn replay_page(
    sh: &mut Shared,
    to: ShardId,
    conn: ConnKey,
    conv: ConvId,
    frames: Vec<Bytes>,
    next: ReplayNext,
) {
    send_replay(sh, to, conn, conv, frames, Some(next), next.chain, true);
}

#[allow(clippy::too_many_arguments)]
fn send_replay(
    sh: &mut Shared,
    to: ShardId,
    conn: ConnKey,
    conv: ConvId,
    frames: Vec<Bytes>,
    more: Option<ReplayNext>,
    chain: u32,
    ok: bool,
) {
    sh.send(
        to,
        ConnMsg::Replay {
            conv,
            conn,
            frames,
            ok,
            more,
            chain,
        },
    );
}

/// One `Deliver` of `frame` to each shard among `subscribers`; `exclude` (the sender)
/// does not get it, `closes` ends every subscription after it.
pub(super) fn fanout(
    sh: &mut Shared,
    conv: ConvId,
    subscribers: &[(ShardId, ConnKey)],
    frame: Bytes,
    exclude: Option<(ShardId, ConnKey)>,
    closes: bool,
) {
    // Per message: no allocation. Subscribers are few, so repeats are found by scanning.
    for (i, (shard, _)) in subscribers.iter().enumerate() {
        if subscribers[..i].iter().any(|(s, _)| s == shard) {
            continue;
        }
        let msg = ConnMsg::Deliver {
            conv,
            frame: frame.clone(),
            exclude,
            closes,
        };
        sh.send(*shard, msg);
    }
}
