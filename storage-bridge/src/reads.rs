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
        let cached = match &self.cache {
            Some(cache) => cache.range(conv, after, before, limit, from).await,
            None => None,
        };
        let mut messages = match cached {
            Some(hit) => hit,
            None => self.store.read(conv, after, before, limit, from).await?,
        };
        let full = messages.len() >= limit as usize;
        let before_cut = messages.len();
        match from {
            From::Oldest => messages.truncate(fitting(&messages, budget)),
            From::Newest => {
                messages.reverse();
                messages.truncate(fitting(&messages, budget));
                messages.reverse();
            }
        }
        Ok(Page {
            more: full || messages.len() < before_cut,
            messages,
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
        let Some(mut info) = self.store.load_conv(conv, recent, cids).await? else {
            return Ok(None);
        };
        info.recent.reverse();
        info.recent.truncate(fitting(&info.recent, PAGE_BYTES / 2));
        info.recent.reverse();
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
            if let Some((floor, upto)) = self.store.take_lease(conv, lease).await? {
                info.seq_floor = floor;
                info.seq_lease = upto;
            }
        }
        Ok(Some(info))
    }
}
