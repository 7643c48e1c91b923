//! The in-memory session backend: a bounded moka cache whose entries expire with their refresh
//! token, the per-user index of session keys (kept by the cache's eviction listener, so an
//! evicted or expired session leaves it too), plus per-session refresh locks. One process only;
//! sessions end with it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use moka::ops::compute::Op;
use parking_lot::Mutex;

use super::{RefreshLock, SessionKey, SessionRecord, SessionStore, StoreError};
use crate::clock::SharedClock;

/// Expires an entry at its record's `refresh_expires_at` by the injected clock.
struct UntilRefreshExpiry {
    clock: SharedClock,
}

impl UntilRefreshExpiry {
    fn left(&self, record: &SessionRecord) -> Option<Duration> {
        Some(Duration::from_secs(
            record
                .refresh_expires_at
                .saturating_sub(self.clock.unix_secs()),
        ))
    }
}

impl moka::Expiry<SessionKey, Arc<SessionRecord>> for UntilRefreshExpiry {
    fn expire_after_create(
        &self,
        _key: &SessionKey,
        value: &Arc<SessionRecord>,
        _created_at: Instant,
    ) -> Option<Duration> {
        self.left(value)
    }

    fn expire_after_update(
        &self,
        _key: &SessionKey,
        value: &Arc<SessionRecord>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        self.left(value)
    }
}

/// User id → the keys of that user's sessions.
type UserIndex = Arc<Mutex<HashMap<String, HashSet<SessionKey>>>>;

/// Sessions in this process's memory.
pub struct MemoryStore {
    cache: moka::future::Cache<SessionKey, Arc<SessionRecord>>,
    by_user: UserIndex,
    locks: LocalLocks,
    clock: SharedClock,
}

/// Per-session locks inside this process: the single-flight in front of every refresh.
#[derive(Default)]
pub struct LocalLocks(Mutex<HashMap<SessionKey, Weak<tokio::sync::Mutex<()>>>>);

impl LocalLocks {
    /// Waits for, then holds, the lock of `key`.
    pub async fn lock(&self, key: &SessionKey) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.0.lock();
            match locks.get(key).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    // Drop locks nobody holds any more, so the map stays as small as the
                    // refreshes in flight.
                    if locks.len() >= 1024 {
                        locks.retain(|_, w| w.strong_count() > 0);
                    }
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(*key, Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

fn unindex(index: &UserIndex, sub: &str, key: &SessionKey) {
    let mut index = index.lock();
    if let Some(keys) = index.get_mut(sub) {
        keys.remove(key);
        if keys.is_empty() {
            index.remove(sub);
        }
    }
}

impl MemoryStore {
    /// A store holding at most `capacity` sessions (the least used go first when full).
    pub fn new(capacity: u64, clock: SharedClock) -> MemoryStore {
        let by_user: UserIndex = Arc::default();
        let index = by_user.clone();
        let cache = moka::future::Cache::builder()
            .max_capacity(capacity)
            .expire_after(UntilRefreshExpiry {
                clock: clock.clone(),
            })
            .eviction_listener(
                move |key: Arc<SessionKey>, record: Arc<SessionRecord>, cause| {
                    // A replaced record is still the same session (its new record was indexed by
                    // `put`); anything else (deleted, expired, evicted for room) is gone.
                    if cause != moka::notification::RemovalCause::Replaced {
                        unindex(&index, &record.sub, &key);
                    }
                },
            )
            .build();
        MemoryStore {
            cache,
            by_user,
            locks: LocalLocks::default(),
            clock,
        }
    }

    /// Whether `record` is still alive by the injected clock (moka's own timer runs on real
    /// time, so a test that moves the clock relies on this check).
    fn alive(&self, record: &SessionRecord) -> bool {
        record.refresh_expires_at > self.clock.unix_secs()
    }
}

impl SessionStore for MemoryStore {
    fn get<'a>(
        &'a self,
        key: &'a SessionKey,
    ) -> BoxFuture<'a, Result<Option<Arc<SessionRecord>>, StoreError>> {
        async move {
            match self.cache.get(key).await {
                Some(r) if self.alive(&r) => Ok(Some(r)),
                Some(_) => {
                    self.cache.invalidate(key).await;
                    Ok(None)
                }
                None => Ok(None),
            }
        }
        .boxed()
    }

    fn put<'a>(
        &'a self,
        key: &'a SessionKey,
        record: SessionRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let sub = record.sub.clone();
            self.cache.insert(*key, Arc::new(record)).await;
            self.by_user.lock().entry(sub).or_default().insert(*key);
            Ok(())
        }
        .boxed()
    }

    fn delete<'a>(&'a self, key: &'a SessionKey) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            self.cache.invalidate(key).await;
            Ok(())
        }
        .boxed()
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a SessionKey,
        expected_version: u64,
        record: SessionRecord,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        async move {
            let record = Arc::new(record);
            let mut swapped = false;
            let _ = self
                .cache
                .entry(*key)
                .and_compute_with(|current| {
                    let op = match current {
                        Some(entry) if entry.value().version == expected_version => {
                            swapped = true;
                            Op::Put(record)
                        }
                        _ => Op::Nop,
                    };
                    std::future::ready(op)
                })
                .await;
            Ok(swapped)
        }
        .boxed()
    }

    fn refresh_lock<'a>(
        &'a self,
        key: &'a SessionKey,
    ) -> BoxFuture<'a, Result<RefreshLock, StoreError>> {
        async move {
            let guard = self.locks.lock(key).await;
            Ok(RefreshLock::new(guard))
        }
        .boxed()
    }

    fn sessions_of<'a>(
        &'a self,
        sub: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SessionKey>, StoreError>> {
        async move {
            let keys: Vec<SessionKey> = self
                .by_user
                .lock()
                .get(sub)
                .map(|k| k.iter().copied().collect())
                .unwrap_or_default();
            let mut live = Vec::with_capacity(keys.len());
            for key in keys {
                match self.cache.get(&key).await {
                    Some(r) if r.sub == sub && self.alive(&r) => live.push(key),
                    // Expired by the injected clock, or the record now belongs to someone else.
                    _ => unindex(&self.by_user, sub, &key),
                }
            }
            Ok(live)
        }
        .boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        std::future::ready(Ok(())).boxed()
    }

    fn count(&self) -> u64 {
        self.cache.entry_count()
    }
}
