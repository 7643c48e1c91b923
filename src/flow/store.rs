//! The flow store: short-lived records of sign-in steps in progress (a code sent and waiting to
//! be entered, an elevated account change), keyed by a random id the gateway mints. The
//! browser only ever holds the id; what the flow is about (the verification id, the contact,
//! the return URL) stays here, so nothing a user could alter travels in a form.
//!
//! Each record is bound to the browser that started it (a hash of its CSRF cookie): an id that
//! leaks into a log or a screenshot is useless in another browser. Records expire after the
//! store's lifetime by the injected clock.
//!
//! In memory (bounded, one process) or in Redis, shared by the replicas: there the key is
//! `Pf:<keyed hash of the id>` and the value `<browser tag><sealed record>`, sealed under a
//! key derived from the keyring and the id (which only the browser holds), with the key name
//! as associated data; taking a record is one script that checks
//! the tag and deletes, so of two replicas racing for one flow step one gets it.

use std::sync::Arc;
use std::time::Duration;

use moka::ops::compute::Op;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::SharedClock;
use crate::entropy::SharedEntropy;
use crate::store::redis::Redis;
use crate::store::RecordSealer;
use crate::store::StoreError;

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

/// What is sealed into a Redis value.
#[derive(Serialize, Deserialize)]
struct Wire<T> {
    e: u64,
    v: T,
}

/// Takes the value when its browser tag (the first 16 bytes) is `ARGV[1]`.
const TAKE: &str = r"
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, 16) ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
return v
";

/// Replaces the value only when it is still exactly `ARGV[1]` (as read).
const UPDATE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
";

enum Backend<T> {
    Memory(moka::future::Cache<String, Arc<Entry<T>>>),
    Redis {
        redis: Arc<Redis>,
        sealer: RecordSealer,
        take: redis::Script,
        update: redis::Script,
    },
}

/// Flow records of type `T`.
pub struct FlowStore<T> {
    backend: Backend<T>,
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

const AAD: &str = "cloudbase-gateway/flow/v1:";

impl<T: Clone + Send + Sync + Serialize + DeserializeOwned + 'static> FlowStore<T> {
    /// A store in memory keeping at most `capacity` records, each for `ttl`.
    pub fn new(capacity: u64, ttl: Duration, clock: SharedClock, entropy: SharedEntropy) -> Self {
        FlowStore {
            backend: Backend::Memory(
                moka::future::Cache::builder()
                    .max_capacity(capacity)
                    // moka's own timer runs on real time: it only frees memory; the injected
                    // clock decides what is expired.
                    .time_to_live(ttl)
                    .build(),
            ),
            clock,
            entropy,
            ttl,
        }
    }

    /// A store in Redis, each record sealed by `sealer` under a key derived from its id, each
    /// kept for `ttl`.
    pub fn redis(
        redis: Arc<Redis>,
        sealer: RecordSealer,
        ttl: Duration,
        clock: SharedClock,
        entropy: SharedEntropy,
    ) -> Self {
        FlowStore {
            backend: Backend::Redis {
                redis,
                sealer,
                take: redis::Script::new(TAKE),
                update: redis::Script::new(UPDATE),
            },
            clock,
            entropy,
            ttl,
        }
    }

    fn name(redis: &Redis, id: &str) -> String {
        redis.key("f", id.as_bytes())
    }

    fn encode(
        redis: &Redis,
        sealer: &RecordSealer,
        id: &str,
        name: &str,
        browser: Browser,
        expires_at: u64,
        value: &T,
    ) -> Result<Vec<u8>, StoreError> {
        let json = serde_json::to_vec(&Wire {
            e: expires_at,
            v: value,
        })
        .map_err(|_| StoreError("flow encode".into()))?;
        let mut out = redis.tag(browser.as_bytes());
        out.extend(sealer.seal(id.as_bytes(), format!("{AAD}{name}").as_bytes(), &json));
        Ok(out)
    }

    /// The record in a Redis value, when it opens and is `browser`'s.
    fn decode(
        redis: &Redis,
        sealer: &RecordSealer,
        id: &str,
        name: &str,
        browser: Browser,
        raw: &[u8],
    ) -> Option<(u64, T)> {
        let tag = redis.tag(browser.as_bytes());
        if raw.len() < tag.len() || raw[..tag.len()] != tag[..] {
            return None;
        }
        let json = sealer.open(
            id.as_bytes(),
            format!("{AAD}{name}").as_bytes(),
            &raw[tag.len()..],
        )?;
        let wire: Wire<T> = serde_json::from_slice(&json).ok()?;
        Some((wire.e, wire.v))
    }

    fn ttl_ms(&self, expires_at: u64) -> u64 {
        expires_at.saturating_sub(self.clock.unix_secs()).max(1) * 1000
    }

    /// Stores `value` for `browser` and returns its new random id (256 bits).
    ///
    /// Fails when the shared store fails (nothing is stored then).
    pub async fn create(&self, browser: Browser, value: T) -> Result<String, StoreError> {
        let id = self.entropy.token(32);
        let expires_at = self.clock.unix_secs() + self.ttl.as_secs();
        match &self.backend {
            Backend::Memory(cache) => {
                let entry = Entry {
                    browser,
                    expires_at,
                    value,
                };
                cache.insert(id.clone(), Arc::new(entry)).await;
            }
            Backend::Redis { redis, sealer, .. } => {
                let name = Self::name(redis, &id);
                let raw = Self::encode(redis, sealer, &id, &name, browser, expires_at, &value)?;
                let _: () = redis
                    .query(
                        "flow_create",
                        redis::cmd("SET")
                            .arg(&name)
                            .arg(raw)
                            .arg("PX")
                            .arg(self.ttl_ms(expires_at)),
                    )
                    .await?;
            }
        }
        Ok(id)
    }

    fn usable(&self, e: &Entry<T>, browser: Browser) -> bool {
        e.browser == browser && e.expires_at > self.clock.unix_secs()
    }

    /// The record `id` of `browser`; `None` when it is unknown, expired, taken or another
    /// browser's.
    ///
    /// Fails when the shared store fails.
    pub async fn get(&self, id: &str, browser: Browser) -> Result<Option<T>, StoreError> {
        if !well_formed(id) {
            return Ok(None);
        }
        match &self.backend {
            Backend::Memory(cache) => Ok(cache
                .get(id)
                .await
                .filter(|e| self.usable(e, browser))
                .map(|e| e.value.clone())),
            Backend::Redis { redis, sealer, .. } => {
                let name = Self::name(redis, id);
                let raw: Option<Vec<u8>> = redis
                    .query("flow_get", redis::cmd("GET").arg(&name))
                    .await?;
                Ok(raw
                    .and_then(|raw| Self::decode(redis, sealer, id, &name, browser, &raw))
                    .filter(|(e, _)| *e > self.clock.unix_secs())
                    .map(|(_, v)| v))
            }
        }
    }

    /// Replaces the value of a usable record, keeping its expiry (or, with `extend`, giving it
    /// the store's whole lifetime again). Returns whether it was there.
    ///
    /// Fails when the shared store fails.
    pub async fn update(
        &self,
        id: &str,
        browser: Browser,
        value: T,
        extend: bool,
    ) -> Result<bool, StoreError> {
        if !well_formed(id) {
            return Ok(false);
        }
        let renewed = self.clock.unix_secs() + self.ttl.as_secs();
        match &self.backend {
            Backend::Memory(cache) => {
                let mut done = false;
                let _ = cache
                    .entry(id.to_string())
                    .and_compute_with(|current| {
                        let op = match current {
                            Some(e) if self.usable(e.value(), browser) => {
                                done = true;
                                let expires_at = if extend {
                                    renewed
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
                Ok(done)
            }
            Backend::Redis {
                redis,
                sealer,
                update,
                ..
            } => {
                let name = Self::name(redis, id);
                let raw: Option<Vec<u8>> = redis
                    .query("flow_get", redis::cmd("GET").arg(&name))
                    .await?;
                let Some(raw) = raw else { return Ok(false) };
                let Some((expires_at, _)) = Self::decode(redis, sealer, id, &name, browser, &raw)
                    .filter(|(e, _)| *e > self.clock.unix_secs())
                else {
                    return Ok(false);
                };
                let expires_at = if extend { renewed } else { expires_at };
                let next = Self::encode(redis, sealer, id, &name, browser, expires_at, &value)?;
                let ttl = self.ttl_ms(expires_at).to_string();
                // Only over the value as read: a take or update meanwhile wins.
                let n: i64 = redis
                    .script(
                        "flow_update",
                        update,
                        &[&name],
                        &[&raw, &next, ttl.as_bytes()],
                    )
                    .await?;
                Ok(n == 1)
            }
        }
    }

    /// Removes and returns the record, atomically: of two concurrent takes (in this process
    /// or across replicas), one gets it.
    ///
    /// Fails when the shared store fails.
    pub async fn take(&self, id: &str, browser: Browser) -> Result<Option<T>, StoreError> {
        Ok(self.take_for_step(id, browser).await?.map(|t| t.value))
    }

    /// Takes the record for one step, so a concurrent submission of the same flow finds
    /// nothing; [`Taken::put_back`] returns it (with its expiry) when the step failed.
    ///
    /// Fails when the shared store fails.
    pub async fn take_for_step(
        &self,
        id: &str,
        browser: Browser,
    ) -> Result<Option<Taken<T>>, StoreError> {
        if !well_formed(id) {
            return Ok(None);
        }
        match &self.backend {
            Backend::Memory(cache) => {
                let mut taken = None;
                let _ = cache
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
                Ok(taken)
            }
            Backend::Redis {
                redis,
                sealer,
                take,
                ..
            } => {
                let name = Self::name(redis, id);
                let tag = redis.tag(browser.as_bytes());
                let raw: Option<Vec<u8>> =
                    redis.script("flow_take", take, &[&name], &[&tag]).await?;
                Ok(raw
                    .and_then(|raw| Self::decode(redis, sealer, id, &name, browser, &raw))
                    .filter(|(e, _)| *e > self.clock.unix_secs())
                    .map(|(expires_at, value)| Taken {
                        id: id.to_string(),
                        browser,
                        expires_at,
                        value,
                    }))
            }
        }
    }

    /// Forgets a record whatever its state (best effort: a shared store that fails leaves it
    /// to expire).
    pub async fn remove(&self, id: &str) {
        if !well_formed(id) {
            return;
        }
        match &self.backend {
            Backend::Memory(cache) => cache.invalidate(id).await,
            Backend::Redis { redis, .. } => {
                let _: Result<i64, _> = redis
                    .query("flow_remove", redis::cmd("DEL").arg(Self::name(redis, id)))
                    .await;
            }
        }
    }

    async fn restore(&self, t: Taken<T>) {
        match &self.backend {
            Backend::Memory(cache) => {
                let entry = Entry {
                    browser: t.browser,
                    expires_at: t.expires_at,
                    value: t.value,
                };
                cache.insert(t.id, Arc::new(entry)).await;
            }
            Backend::Redis { redis, sealer, .. } => {
                let name = Self::name(redis, &t.id);
                let Ok(raw) = Self::encode(
                    redis,
                    sealer,
                    &t.id,
                    &name,
                    t.browser,
                    t.expires_at,
                    &t.value,
                ) else {
                    return;
                };
                let put: Result<(), _> = redis
                    .query(
                        "flow_put_back",
                        redis::cmd("SET")
                            .arg(&name)
                            .arg(raw)
                            .arg("PX")
                            .arg(self.ttl_ms(t.expires_at)),
                    )
                    .await;
                if put.is_err() {
                    tracing::warn!("a flow step could not be put back; the visitor starts again");
                }
            }
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

impl<T: Clone + Send + Sync + Serialize + DeserializeOwned + 'static> Taken<T> {
    /// Puts the record (as it is now) back under its id, with its original expiry.
    pub async fn put_back(self, store: &FlowStore<T>) {
        store.restore(self).await;
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
        let id = store.create(me, 7).await.unwrap();
        assert_eq!(id.len(), 43);
        assert_eq!(store.get(&id, me).await.unwrap(), Some(7));
        assert_eq!(
            store.get(&id, other).await.unwrap(),
            None,
            "another browser"
        );
        assert_eq!(store.get("garbage", me).await.unwrap(), None);
        assert!(!store.update(&id, other, 9, false).await.unwrap());
        assert!(store.update(&id, me, 8, false).await.unwrap());
        let step = store.take_for_step(&id, me).await.unwrap().unwrap();
        assert_eq!(
            store.get(&id, me).await.unwrap(),
            None,
            "taken for the step"
        );
        assert!(
            store.take_for_step(&id, me).await.unwrap().is_none(),
            "a second submission finds nothing"
        );
        step.put_back(&store).await;
        assert_eq!(store.take(&id, other).await.unwrap(), None);
        assert_eq!(store.take(&id, me).await.unwrap(), Some(8));
        assert_eq!(store.take(&id, me).await.unwrap(), None, "single use");

        let id = store.create(me, 1).await.unwrap();
        clock.advance(Duration::from_secs(601));
        assert_eq!(store.get(&id, me).await.unwrap(), None, "expired");
        assert_eq!(store.take(&id, me).await.unwrap(), None);
    }
}
