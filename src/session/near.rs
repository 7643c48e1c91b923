//! The near cache in front of the Redis session store. A record read from Redis is kept here
//! for at most [`NEAR_TTL_MS`] by the injected clock, and dropped as soon as any replica
//! announces a change to it on the invalidation channel (`<prefix>invalidate`, one message
//! per write: `<replica id>:<session id>`). While the subscription is down (or does not answer
//! a PING within `redis_timeout`), nothing is cached, so a sign-out on one replica is honoured
//! by every other within the message's delivery, and never later than [`NEAR_TTL_MS`] after
//! the read that filled the entry, by either clock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;

use super::SessionRecord;
use crate::clock::SharedClock;
use crate::store::redis::Redis;

/// The longest a record is served from this replica's memory without reading Redis.
pub const NEAR_TTL_MS: u64 = 500;

/// Records read recently, by session id.
pub struct NearCache {
    entries: moka::sync::Cache<[u8; 32], (Arc<SessionRecord>, u64)>,
    healthy: AtomicBool,
    /// Bumped by every invalidation: a read that raced one is not cached.
    generation: AtomicU64,
    replica: String,
    channel: String,
    clock: SharedClock,
}

impl NearCache {
    /// A cache of at most `capacity` records, announcing and hearing changes on `channel` as
    /// `replica`.
    pub fn new(capacity: u64, channel: String, replica: String, clock: SharedClock) -> NearCache {
        NearCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity)
                // Both clocks bound an entry: real time here (a clock that does not move, or
                // moves back, cannot keep one), the injected clock in `get` (tests move it).
                .time_to_live(Duration::from_millis(NEAR_TTL_MS))
                .build(),
            healthy: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            replica,
            channel,
            clock,
        }
    }

    /// The channel changes are announced on.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The message announcing a change to session `id`.
    pub fn message(&self, id: &[u8; 32]) -> String {
        format!("{}:{}", self.replica, hex::encode(id))
    }

    /// The record of session `id`, when it was read less than [`NEAR_TTL_MS`] ago and no
    /// change was announced since.
    pub fn get(&self, id: &[u8; 32]) -> Option<Arc<SessionRecord>> {
        if !self.healthy.load(Ordering::SeqCst) {
            return None;
        }
        let (record, at) = self.entries.get(id)?;
        (self.clock.unix_millis().saturating_sub(at) < NEAR_TTL_MS).then_some(record)
    }

    /// What to pass to [`NearCache::fill`], taken before reading Redis: the generation, and
    /// the time the read started (an entry is as old as the read that made it).
    pub fn before_read(&self) -> (u64, u64) {
        (
            self.generation.load(Ordering::SeqCst),
            self.clock.unix_millis(),
        )
    }

    /// Keeps `record`, read from Redis, unless a change was announced since `before`.
    pub fn fill(&self, id: &[u8; 32], record: Arc<SessionRecord>, before: (u64, u64)) {
        let (generation, started) = before;
        if !self.healthy.load(Ordering::SeqCst)
            || self.generation.load(Ordering::SeqCst) != generation
        {
            return;
        }
        self.entries.insert(*id, (record, started));
        // An invalidation that landed between the check and the insert must win.
        if self.generation.load(Ordering::SeqCst) != generation
            || !self.healthy.load(Ordering::SeqCst)
        {
            self.entries.invalidate(id);
        }
    }

    /// Forgets session `id` (this replica changed it).
    pub fn forget(&self, id: &[u8; 32]) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate(id);
    }

    fn heard(&self, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        let Some((from, id)) = text.split_once(':') else {
            return;
        };
        if from == self.replica {
            return;
        }
        let Some(id) = hex::decode(id)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
        else {
            return;
        };
        self.forget(&id);
    }

    fn up(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate_all();
        self.healthy.store(true, Ordering::SeqCst);
    }

    fn down(&self) {
        self.healthy.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate_all();
    }
}

/// Listens on the invalidation channel for `cache`, on a thread of its own (so a busy worker
/// cannot delay an invalidation), until the cache is dropped. Reconnects after any failure,
/// with the cache off meanwhile.
pub fn listen(cache: Weak<NearCache>, redis: Arc<Redis>) {
    let spawned = std::thread::Builder::new()
        .name("session-invalidations".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(run(cache, redis));
        });
    if spawned.is_err() {
        tracing::warn!("no thread for session invalidations: the near cache stays off");
    }
}

async fn run(cache: Weak<NearCache>, redis: Arc<Redis>) {
    loop {
        let Some(channel) = cache.upgrade().map(|c| c.channel().to_string()) else {
            return;
        };
        match subscribe(&redis, &channel).await {
            Ok(pubsub) => {
                if let Some(c) = cache.upgrade() {
                    c.up();
                }
                let (mut sink, mut messages) = pubsub.split();
                loop {
                    // Wakes every second: to notice a dropped cache, and to PING, since a
                    // server that vanished without closing the connection sends nothing.
                    match tokio::time::timeout(Duration::from_secs(1), messages.next()).await {
                        Ok(Some(msg)) => match cache.upgrade() {
                            Some(c) => c.heard(msg.get_payload_bytes()),
                            None => return,
                        },
                        Ok(None) => break,
                        Err(_) if cache.upgrade().is_none() => return,
                        Err(_) => {
                            let pong =
                                tokio::time::timeout(redis.timeout(), sink.ping::<String>()).await;
                            if !matches!(pong, Ok(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
                tracing::warn!(
                    "session invalidation channel lost; near cache off until it is back"
                );
            }
            Err(e) => tracing::debug!(error = %e, "session invalidation channel not subscribed"),
        }
        match cache.upgrade() {
            Some(c) => c.down(),
            None => return,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn subscribe(redis: &Redis, channel: &str) -> Result<redis::aio::PubSub, super::StoreError> {
    let failed = || super::StoreError("redis subscribe".into());
    let client = redis.pubsub_client().await?;
    let mut pubsub = tokio::time::timeout(redis.timeout(), client.get_async_pubsub())
        .await
        .map_err(|_| failed())?
        .map_err(|_| failed())?;
    tokio::time::timeout(redis.timeout(), pubsub.subscribe(channel))
        .await
        .map_err(|_| failed())?
        .map_err(|_| failed())?;
    Ok(pubsub)
}
