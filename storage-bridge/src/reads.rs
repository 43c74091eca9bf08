//! The read path: conversation loads and history, from the Redis cache when it certainly
//! has the answer, else from the database. Every answer that goes back over the link is cut
//! to one page ([`PAGE_BYTES`]) and says whether there is more.

use crate::cache::Cache;
use crate::store::{From, Store, StoreError};
use std::sync::Arc;
use switchboard_protocol::bridge::{fitting, ConvInfo, StoredMessage, PAGE_BYTES};
use switchboard_protocol::ConvId;

pub struct Reads {
    pub store: Arc<Store>,
    pub cache: Option<Cache>,
}

/// One page of a read.
#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    pub messages: Vec<StoredMessage>,
    /// More may match: the read stopped at its count or at the page size.
    pub more: bool,
}

/// Rows fetched by the first query of a bounded read; later ones are sized from what the
/// rows so far weighed, so that neither many small messages cost many queries nor a few
/// large ones a huge fetch that is mostly cut away.
const FIRST_CHUNK: u32 = 32;

impl Reads {
    /// Messages with `after < seq < before`, oldest first, at most `limit`, from `from`,
    /// cut to `budget` bytes (the messages nearest `from` are kept).
    pub async fn read(
        &self,
        conv: ConvId,
        after: u64,
        before: u64,
        limit: u32,
        from: From,
        budget: usize,
    ) -> Result<Page, StoreError> {
        if let Some(cache) = &self.cache {
            if let Some(hit) = cache.range(conv, after, before, limit, from).await {
                return Ok(cut(hit, limit, from, budget));
            }
        }
        self.read_store(conv, after, before, limit, from, budget)
            .await
    }

    /// [`Self::read`] from the database, in chunks: never more rows than the page needs
    /// plus one chunk, however large the messages or the conversation.
    async fn read_store(
        &self,
        conv: ConvId,
        mut after: u64,
        mut before: u64,
        limit: u32,
        from: From,
        budget: usize,
    ) -> Result<Page, StoreError> {
        // Nearest `from` first.
        let mut got: Vec<StoredMessage> = Vec::new();
        let mut used = 0usize;
        let mut chunk = FIRST_CHUNK.min(limit.max(1));
        let more = loop {
            let mut rows = self.store.read(conv, after, before, chunk, from).await?;
            let fetched = rows.len();
            if from == From::Newest {
                rows.reverse();
            }
            let mut full = false;
            for m in rows {
                let size = m.encoded_len();
                if !got.is_empty() && used + size > budget {
                    full = true;
                    break;
                }
                used += size;
                got.push(m);
                if got.len() >= limit as usize {
                    full = true;
                    break;
                }
            }
            if full {
                break true;
            }
            if fetched < chunk as usize {
                break false;
            }
            match (from, got.last()) {
                (From::Oldest, Some(m)) => after = m.seq,
                (From::Newest, Some(m)) => before = m.seq,
                (_, None) => break false,
            }
            let avg = (used / got.len()).max(1);
            let room = (budget.saturating_sub(used) / avg) as u32 + 1;
            chunk = room.clamp(1, 1024).min(limit - got.len() as u32);
        };
        if from == From::Newest {
            got.reverse();
        }
        Ok(Page {
            messages: got,
            more,
        })
    }

    /// Newest messages before `before` (the REST API; not bound by the link's page).
    pub async fn history(
        &self,
        conv: ConvId,
        before: u64,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        Ok(self
            .read(conv, 0, before, limit, From::Newest, usize::MAX)
            .await?
            .messages)
    }

    /// A conversation for a gateway that reloads it: its newest messages (as many as fit
    /// half a page), the cids of its newest `cids` (as many as fit the other half), and a
    /// new lease of `lease` seqs above everything that may have been used.
    pub async fn load_conv(
        &self,
        conv: ConvId,
        recent: u32,
        cids: u32,
        lease: u64,
    ) -> Result<Option<ConvInfo>, StoreError> {
        let Some(mut info) = self.store.load_conv(conv, 0, cids).await? else {
            return Ok(None);
        };
        if recent > 0 {
            let page = self
                .read_store(conv, 0, u64::MAX, recent, From::Newest, PAGE_BYTES / 2)
                .await?;
            info.recent = page.messages;
        }
        let mut used = 0usize;
        let keep = info
            .cids
            .iter()
            .rev()
            .take_while(|c| {
                used += c.encoded_len();
                used <= PAGE_BYTES / 2
            })
            .count();
        info.cids.drain(..info.cids.len() - keep);
        if lease > 0 {
            if let Some((floor, upto, epoch)) = self.store.take_lease(conv, lease).await? {
                info.seq_floor = floor;
                info.seq_lease = upto;
                info.epoch = epoch;
            }
        }
        Ok(Some(info))
    }
}

/// Cuts messages read at once (oldest first) to `limit` and `budget` from `from`.
fn cut(mut messages: Vec<StoredMessage>, limit: u32, from: From, budget: usize) -> Page {
    let full = messages.len() >= limit as usize;
    let before_cut = messages.len();
    if from == From::Newest {
        messages.reverse();
    }
    messages.truncate(fitting(&messages, budget));
    if from == From::Newest {
        messages.reverse();
    }
    Page {
        more: full || messages.len() < before_cut,
        messages,
    }
}
