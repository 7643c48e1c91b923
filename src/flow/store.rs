//! The flow store: short-lived records of sign-in steps in progress (a code sent and waiting to
//! be entered, an elevated account change), keyed by a random id the gateway mints. The
//! browser only ever holds the id; what the flow is about (the verification id, the contact,
//! the return URL) stays here, so nothing a user could alter travels in a form.
//!
//! Each record is bound to the browser that started it (a hash of its CSRF cookie): an id that
//! leaks into a log or a screenshot is useless in another browser. Records expire after the
//! store's lifetime by the injected clock. In memory, bounded; one process only.

use std::sync::Arc;
use std::time::Duration;

use moka::ops::compute::Op;
use sha2::{Digest, Sha256};

use crate::clock::SharedClock;
use crate::entropy::SharedEntropy;

/// Which browser a record belongs to: a hash of its CSRF cookie value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Browser([u8; 32]);

impl Browser {
    /// The binding for a CSRF cookie value.
    pub fn from_csrf(csrf_value: &str) -> Browser {
        Browser(Sha256::digest(csrf_value.as_bytes()).into())
    }

    /// The hash itself (what a state's browser binding is an HMAC of).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Browser(redacted)")
    }
}

struct Entry<T> {
    browser: Browser,
    expires_at: u64,
    value: T,
}

/// Flow records of type `T`.
pub struct FlowStore<T> {
    cache: moka::future::Cache<String, Arc<Entry<T>>>,
    clock: SharedClock,
    entropy: SharedEntropy,
    ttl: Duration,
}

/// Whether `id` could have been minted by [`FlowStore::create`] (checked before any lookup).
fn well_formed(id: &str) -> bool {
    id.len() == 43
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl<T: Clone + Send + Sync + 'static> FlowStore<T> {
    /// A store keeping at most `capacity` records, each for `ttl`.
    pub fn new(capacity: u64, ttl: Duration, clock: SharedClock, entropy: SharedEntropy) -> Self {
        FlowStore {
            cache: moka::future::Cache::builder()
                .max_capacity(capacity)
                // moka's own timer runs on real time: it only frees memory; the injected clock
                // decides what is expired.
                .time_to_live(ttl)
                .build(),
            clock,
            entropy,
            ttl,
        }
    }

    /// Stores `value` for `browser` and returns its new random id (256 bits).
    pub async fn create(&self, browser: Browser, value: T) -> String {
        let id = self.entropy.token(32);
        let entry = Entry {
            browser,
            expires_at: self.clock.unix_secs() + self.ttl.as_secs(),
            value,
        };
        self.cache.insert(id.clone(), Arc::new(entry)).await;
        id
    }

    fn usable(&self, e: &Entry<T>, browser: Browser) -> bool {
        e.browser == browser && e.expires_at > self.clock.unix_secs()
    }

    /// The record `id` of `browser`; `None` when it is unknown, expired, taken or another
    /// browser's.
    pub async fn get(&self, id: &str, browser: Browser) -> Option<T> {
        if !well_formed(id) {
            return None;
        }
        let e = self.cache.get(id).await?;
        self.usable(&e, browser).then(|| e.value.clone())
    }

    /// Replaces the value of a usable record, keeping its expiry (or, with `extend`, giving it
    /// the store's whole lifetime again). Returns whether it was there.
    pub async fn update(&self, id: &str, browser: Browser, value: T, extend: bool) -> bool {
        if !well_formed(id) {
            return false;
        }
        let mut done = false;
        let _ = self
            .cache
            .entry(id.to_string())
            .and_compute_with(|current| {
                let op = match current {
                    Some(e) if self.usable(e.value(), browser) => {
                        done = true;
                        let expires_at = if extend {
                            self.clock.unix_secs() + self.ttl.as_secs()
                        } else {
                            e.value().expires_at
                        };
                        Op::Put(Arc::new(Entry {
                            browser,
                            expires_at,
                            value: value.clone(),
                        }))
                    }
                    _ => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
        done
    }

    /// Removes and returns the record, atomically: of two concurrent takes, one gets it.
    pub async fn take(&self, id: &str, browser: Browser) -> Option<T> {
        self.take_for_step(id, browser).await.map(|t| t.value)
    }

    /// Takes the record for one step, so a concurrent submission of the same flow finds
    /// nothing; [`Taken::put_back`] returns it (with its expiry) when the step failed.
    pub async fn take_for_step(&self, id: &str, browser: Browser) -> Option<Taken<T>> {
        if !well_formed(id) {
            return None;
        }
        let mut taken = None;
        let _ = self
            .cache
            .entry(id.to_string())
            .and_compute_with(|current| {
                let op = match current {
                    Some(e) if self.usable(e.value(), browser) => {
                        taken = Some(Taken {
                            id: id.to_string(),
                            browser,
                            expires_at: e.value().expires_at,
                            value: e.value().value.clone(),
                        });
                        Op::Remove
                    }
                    _ => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
        taken
    }

    /// Forgets a record whatever its state.
    pub async fn remove(&self, id: &str) {
        if well_formed(id) {
            self.cache.invalidate(id).await;
        }
    }
}

/// A record taken out of the store for one step.
pub struct Taken<T> {
    id: String,
    browser: Browser,
    expires_at: u64,
    /// The record.
    pub value: T,
}

impl<T: Clone + Send + Sync + 'static> Taken<T> {
    /// Puts the record (as it is now) back under its id, with its original expiry.
    pub async fn put_back(self, store: &FlowStore<T>) {
        let entry = Entry {
            browser: self.browser,
            expires_at: self.expires_at,
            value: self.value,
        };
        store.cache.insert(self.id, Arc::new(entry)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::entropy::OsEntropy;

    #[actix_web::test]
    async fn records_are_bound_expire_and_are_taken_once() {
        let clock = Arc::new(ManualClock::default());
        let store: FlowStore<u32> = FlowStore::new(
            100,
            Duration::from_secs(600),
            clock.clone(),
            Arc::new(OsEntropy),
        );
        let me = Browser::from_csrf("cookie-a");
        let other = Browser::from_csrf("cookie-b");
        let id = store.create(me, 7).await;
        assert_eq!(id.len(), 43);
        assert_eq!(store.get(&id, me).await, Some(7));
        assert_eq!(store.get(&id, other).await, None, "another browser");
        assert_eq!(store.get("garbage", me).await, None);
        assert!(!store.update(&id, other, 9, false).await);
        assert!(store.update(&id, me, 8, false).await);
        let step = store.take_for_step(&id, me).await.unwrap();
        assert_eq!(store.get(&id, me).await, None, "taken for the step");
        assert!(
            store.take_for_step(&id, me).await.is_none(),
            "a second submission finds nothing"
        );
        step.put_back(&store).await;
        assert_eq!(store.take(&id, other).await, None);
        assert_eq!(store.take(&id, me).await, Some(8));
        assert_eq!(store.take(&id, me).await, None, "single use");

        let id = store.create(me, 1).await;
        clock.advance(Duration::from_secs(601));
        assert_eq!(store.get(&id, me).await, None, "expired");
        assert_eq!(store.take(&id, me).await, None);
    }
}
