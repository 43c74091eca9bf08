//! The read path: conversation loads and history, from the Redis cache when it certainly
//! has the answer, else from the database.

use crate::cache::Cache;
use crate::store::{Store, StoreError};
use std::sync::Arc;
use switchboard_protocol::bridge::{ConvInfo, StoredMessage};
use switchboard_protocol::ConvId;

pub struct Reads {
    pub store: Arc<Store>,
    pub cache: Option<Cache>,
}

impl Reads {
    pub async fn history(
        &self,
        conv: ConvId,
        after: u64,
        before: u64,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        if let Some(cache) = &self.cache {
            if let Some(hit) = cache.range(conv, after, before, limit).await {
                return Ok(hit);
            }
        }
        self.store.history(conv, after, before, limit).await
    }

    pub async fn load_conv(
        &self,
        conv: ConvId,
        recent: u32,
    ) -> Result<Option<ConvInfo>, StoreError> {
        self.store.load_conv(conv, recent).await
    }
}
