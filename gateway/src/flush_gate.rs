//! The writes of one executor turn, sent together ([`FlushGate`]).
//!
//! A shard's connection tasks run one after another in a turn: read a frame, hand it to the
//! core, write what the core queued. Written at once, the ack to a visitor leaves several
//! microseconds before the relay to its agent, and each `sendto` on a quiet peer wakes the
//! peer's thread: on loopback that wake-up (and its IPI) is paid inside our `sendto`. Here a
//! connection with something to write waits at the gate instead, and the gate's task opens
//! it once the tasks already queued for this turn have read and routed, so the turn's
//! writes go out back to back (Seastar's `batch_flushes`). A connection that reads several
//! frames in one turn also writes their answers with one `sendto`.

use crate::notify::Notify;
use std::cell::{Cell, RefCell};
use std::task::{Context, Waker};

#[derive(Default)]
pub struct FlushGate {
    open: Cell<bool>,
    waiting: RefCell<Vec<Waker>>,
    kick: Notify,
}

impl FlushGate {
    /// True when the caller may write now. Otherwise its task is woken when the gate opens.
    pub fn pass(&self, cx: &Context<'_>) -> bool {
        if self.open.get() {
            return true;
        }
        self.waiting.borrow_mut().push(cx.waker().clone());
        self.kick.notify();
        false
    }

    /// The gate's own task: opens it for everyone waiting, once per turn. It runs after the
    /// tasks queued before it (glommio's run queue is first in, first out), wakes the
    /// waiting ones and stays open until they have run (it yields behind them).
    pub async fn run(&self) {
        loop {
            self.kick.wait().await;
            let waiting = std::mem::take(&mut *self.waiting.borrow_mut());
            if waiting.is_empty() {
                continue;
            }
            self.open.set(true);
            for w in waiting {
                w.wake();
            }
            futures_lite::future::yield_now().await;
            self.open.set(false);
        }
    }
}
