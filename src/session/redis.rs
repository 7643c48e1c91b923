//! The Redis session backend, shared by every replica and kept across restarts.
//!
//! Layout (`P` = `redis_key_prefix`, `H` = hex of the session id, a hash of the handle):
//! - `P{H}:s`: `<version>:<sealed record>`; the record is sealed under a key derived from the
//!   cookie handle (which Redis never sees), with the key name as associated data. The version
//!   stays in clear so the compare-and-swap script can check it without the key.
//! - `P{H}:lock`: the cross-replica refresh lock, `SET NX PX` with a random owner token,
//!   released and renewed by scripts only by its owner. It shares the record's hash tag.
//! - `Pu:<keyed hash of the uid>`: a set of the user's session ids (`H`), for "sign out
//!   everywhere"; dead members are dropped when it is read.
//!
//! A record's own `refresh_expires_at` decides whether it is alive (by the injected clock);
//! the Redis TTLs only collect garbage. Reads go through the near cache ([`super::near`]):
//! every write here announces itself on `Pinvalidate`, so other replicas drop their copy.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use redis::Script;

use super::memory::LocalLocks;
use super::near::{self, NearCache};
use super::{RefreshLock, SessionKey, SessionRecord, SessionStore, StoreError};
use crate::clock::SharedClock;
use crate::entropy::SharedEntropy;
use crate::store::redis::Redis;

/// Replaces the value only when its version prefix is `ARGV[1]`.
const CAS: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local sep = string.find(v, ':', 1, true)
if not sep or string.sub(v, 1, sep - 1) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
";

/// Deletes the lock only when `ARGV[1]` holds it.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Extends the lock's lease only when `ARGV[1]` holds it.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
";

/// How often a waiter looks at the lock again.
const LOCK_POLL: Duration = Duration::from_millis(20);

/// Sessions in Redis.
pub struct RedisSessionStore {
    redis: Arc<Redis>,
    clock: SharedClock,
    entropy: SharedEntropy,
    /// The refresh lock's lease: at least the CloudBase deadline, renewed while held.
    lease: Duration,
    local: LocalLocks,
    cas: Script,
    unlock: Arc<Script>,
    renew: Arc<Script>,
    /// Records read in the last half second, dropped on any replica's change ([`near`]).
    near: Option<Arc<NearCache>>,
}

/// The owner of a cross-replica lock.
struct Held {
    redis: Arc<Redis>,
    unlock: Arc<Script>,
    key: String,
    owner: Vec<u8>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewer.abort();
        let (redis, unlock, key, owner) = (
            self.redis.clone(),
            self.unlock.clone(),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.owner),
        );
        // Released in the background: a guard is dropped in synchronous code. If this fails,
        // or there is no runtime to run it, the lease runs out.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let _: Result<i64, _> = redis
                .script("refresh_unlock", &unlock, &[&key], &[&owner])
                .await;
        });
    }
}

impl RedisSessionStore {
    /// Sessions in `redis`, with refresh locks leased for `lease`, and a near cache of at most
    /// `near_capacity` records (`None`: every read goes to Redis).
    pub fn new(
        redis: Arc<Redis>,
        clock: SharedClock,
        entropy: SharedEntropy,
        lease: Duration,
        near_capacity: Option<u64>,
    ) -> RedisSessionStore {
        let near = near_capacity.map(|capacity| {
            let cache = Arc::new(NearCache::new(
                capacity,
                format!("{}invalidate", redis.prefix()),
                entropy.hex_id(),
                clock.clone(),
            ));
            near::listen(Arc::downgrade(&cache), redis.clone());
            cache
        });
        RedisSessionStore {
            redis,
            clock,
            entropy,
            lease: lease.max(Duration::from_secs(1)),
            local: LocalLocks::default(),
            cas: Script::new(CAS),
            unlock: Arc::new(Script::new(UNLOCK)),
            renew: Arc::new(Script::new(RENEW)),
            near,
        }
    }

    /// Tells the other replicas (and this one's near cache) that session `key` changed.
    /// Best effort: a lost message is bounded by the near cache's lifetime.
    async fn changed(&self, key: &SessionKey) {
        let Some(near) = &self.near else { return };
        near.forget(key.id());
        let _: Result<i64, _> = self
            .redis
            .query(
                "session_invalidate",
                redis::cmd("PUBLISH")
                    .arg(near.channel())
                    .arg(near.message(key.id())),
            )
            .await;
    }

    /// The record under `key` read from Redis itself (and kept in the near cache).
    async fn read(&self, key: &SessionKey) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        if key.seal_key().is_none() {
            return Ok(None);
        }
        let before = self.near.as_ref().map(|n| n.before_read());
        let name = self.record_key(key);
        let value: Option<Vec<u8>> = self
            .redis
            .query("session_get", redis::cmd("GET").arg(&name))
            .await?;
        let Some(value) = value else { return Ok(None) };
        match self.decode(&name, key, &value) {
            Some(r) if r.refresh_expires_at > self.clock.unix_secs() => {
                let r = Arc::new(r);
                if let (Some(near), Some(b)) = (&self.near, before) {
                    near.fill(key.id(), r.clone(), b);
                }
                Ok(Some(r))
            }
            Some(_) => Ok(None),
            None => {
                tracing::warn!(session = ?key, "a stored session does not open; ignoring it");
                Ok(None)
            }
        }
    }

    fn record_key(&self, key: &SessionKey) -> String {
        format!("{}{{{}}}:s", self.redis.prefix(), hex::encode(key.id()))
    }

    fn lock_key(&self, key: &SessionKey) -> String {
        format!("{}{{{}}}:lock", self.redis.prefix(), hex::encode(key.id()))
    }

    fn index_key(&self, sub: &str) -> String {
        self.redis.key("u", sub.as_bytes())
    }

    /// Milliseconds until the record is garbage (at least one).
    fn ttl_ms(&self, record: &SessionRecord) -> u64 {
        record
            .refresh_expires_at
            .saturating_sub(self.clock.unix_secs())
            .max(1)
            * 1000
    }

    fn encode(
        &self,
        name: &str,
        key: &SessionKey,
        record: &SessionRecord,
    ) -> Result<Vec<u8>, StoreError> {
        let seal = key
            .seal_key()
            .ok_or_else(|| StoreError("session key without its handle".into()))?;
        let json = serde_json::to_vec(record).map_err(|_| StoreError("session encode".into()))?;
        let mut out = format!("{}:", record.version).into_bytes();
        out.extend(crate::store::seal(
            seal,
            name.as_bytes(),
            &json,
            self.entropy.as_ref(),
        ));
        Ok(out)
    }

    fn decode(&self, name: &str, key: &SessionKey, value: &[u8]) -> Option<SessionRecord> {
        let seal = key.seal_key()?;
        let sep = value.iter().position(|b| *b == b':')?;
        let version: u64 = std::str::from_utf8(&value[..sep]).ok()?.parse().ok()?;
        let json = crate::store::open(seal, name.as_bytes(), &value[sep + 1..])?;
        let record: SessionRecord = serde_json::from_slice(&json).ok()?;
        (record.version == version).then_some(record)
    }

    /// Adds the session to its user's index, which lives at least as long as the record.
    async fn index(&self, key: &SessionKey, sub: &str, ttl_ms: u64) -> Result<(), StoreError> {
        let index = self.index_key(sub);
        let _: i64 = self
            .redis
            .query(
                "index_add",
                redis::cmd("SADD").arg(&index).arg(hex::encode(key.id())),
            )
            .await?;
        // Every session lives `session_ttl` from its last write, so the one written now lives
        // longest: the index lives as long as it.
        let _: i64 = self
            .redis
            .query("index_add", redis::cmd("PEXPIRE").arg(&index).arg(ttl_ms))
            .await?;
        Ok(())
    }

    /// Tries once to take the lock `name` for `owner` for `lease`. Returns whether it was
    /// taken.
    ///
    /// Fails when Redis fails.
    pub async fn try_lock(
        &self,
        name: &str,
        owner: &[u8],
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let set: Option<String> = self
            .redis
            .query(
                "refresh_lock",
                redis::cmd("SET")
                    .arg(name)
                    .arg(owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(lease.as_millis() as u64),
            )
            .await?;
        Ok(set.is_some())
    }

    /// Releases the lock `name` if `owner` holds it. Returns whether it did.
    ///
    /// Fails when Redis fails.
    pub async fn unlock(&self, name: &str, owner: &[u8]) -> Result<bool, StoreError> {
        let n: i64 = self
            .redis
            .script("refresh_unlock", &self.unlock, &[name], &[owner])
            .await?;
        Ok(n == 1)
    }

    /// Extends the lease of the lock `name` if `owner` holds it. Returns whether it did.
    ///
    /// Fails when Redis fails.
    pub async fn renew(
        &self,
        name: &str,
        owner: &[u8],
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let ms = (lease.as_millis() as u64).to_string();
        let n: i64 = self
            .redis
            .script(
                "refresh_renew",
                &self.renew,
                &[name],
                &[owner, ms.as_bytes()],
            )
            .await?;
        Ok(n == 1)
    }

    /// The lock name of a session (for tests of the lock itself).
    pub fn lock_name(&self, key: &SessionKey) -> String {
        self.lock_key(key)
    }
}

impl SessionStore for RedisSessionStore {
    fn get<'a>(
        &'a self,
        key: &'a SessionKey,
    ) -> BoxFuture<'a, Result<Option<Arc<SessionRecord>>, StoreError>> {
        async move {
            if key.seal_key().is_some() {
                if let Some(r) = self.near.as_ref().and_then(|n| n.get(key.id())) {
                    if r.refresh_expires_at > self.clock.unix_secs() {
                        return Ok(Some(r));
                    }
                }
            }
            self.read(key).await
        }
        .boxed()
    }

    fn get_uncached<'a>(
        &'a self,
        key: &'a SessionKey,
    ) -> BoxFuture<'a, Result<Option<Arc<SessionRecord>>, StoreError>> {
        self.read(key).boxed()
    }

    fn put<'a>(
        &'a self,
        key: &'a SessionKey,
        record: SessionRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let name = self.record_key(key);
            let value = self.encode(&name, key, &record)?;
            let ttl = self.ttl_ms(&record);
            // The record first, then its index entry: a member is only ever added for a record
            // that exists, so a reader may drop members whose record is gone. If the index
            // write fails, the sign-in fails and the record is garbage nobody holds a cookie
            // for.
            let written: Result<(), StoreError> = self
                .redis
                .query(
                    "session_put",
                    redis::cmd("SET").arg(&name).arg(value).arg("PX").arg(ttl),
                )
                .await;
            // Announced even when the answer was lost: the write may have happened.
            if written.is_err() {
                self.changed(key).await;
            }
            written?;
            self.index(key, &record.sub, ttl).await?;
            self.changed(key).await;
            Ok(())
        }
        .boxed()
    }

    fn delete<'a>(&'a self, key: &'a SessionKey) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let deleted: Result<i64, StoreError> = self
                .redis
                .query(
                    "session_delete",
                    redis::cmd("DEL").arg(self.record_key(key)),
                )
                .await;
            // Announced even when the answer was lost: the delete may have happened.
            self.changed(key).await;
            deleted.map(|_| ())
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
            let name = self.record_key(key);
            let value = self.encode(&name, key, &record)?;
            let expected = expected_version.to_string();
            let ttl_ms = self.ttl_ms(&record);
            // A refresh extends the session: its index must live as long (and follow a new uid).
            self.index(key, &record.sub, ttl_ms).await?;
            let ttl = ttl_ms.to_string();
            let n: Result<i64, StoreError> = self
                .redis
                .script(
                    "session_cas",
                    &self.cas,
                    &[&name],
                    &[expected.as_bytes(), &value, ttl.as_bytes()],
                )
                .await;
            // Announced when it swapped, and when the answer was lost (it may have).
            if !matches!(n, Ok(0)) {
                self.changed(key).await;
            }
            Ok(n? == 1)
        }
        .boxed()
    }

    fn refresh_lock<'a>(
        &'a self,
        key: &'a SessionKey,
    ) -> BoxFuture<'a, Result<RefreshLock, StoreError>> {
        async move {
            // One request per process waits on Redis; the others wait here.
            let local = self.local.lock(key).await;
            let name = self.lock_key(key);
            let mut owner = [0u8; 16];
            self.entropy.fill(&mut owner);
            let owner = hex::encode(owner).into_bytes();
            let deadline = tokio::time::Instant::now() + self.lease + self.redis.timeout();
            while !self.try_lock(&name, &owner, self.lease).await? {
                if tokio::time::Instant::now() >= deadline {
                    return Err(StoreError("refresh lock (held too long)".into()));
                }
                tokio::time::sleep(LOCK_POLL).await;
            }
            let renewer = {
                let (redis, renew, name, owner, lease) = (
                    self.redis.clone(),
                    self.renew.clone(),
                    name.clone(),
                    owner.clone(),
                    self.lease,
                );
                tokio::spawn(async move {
                    let ms = (lease.as_millis() as u64).to_string();
                    loop {
                        tokio::time::sleep(lease / 3).await;
                        let _: Result<i64, _> = redis
                            .script("refresh_renew", &renew, &[&name], &[&owner, ms.as_bytes()])
                            .await;
                    }
                })
            };
            let held = Held {
                redis: self.redis.clone(),
                unlock: self.unlock.clone(),
                key: name,
                owner,
                renewer,
            };
            Ok(RefreshLock::new((local, held)))
        }
        .boxed()
    }

    fn sessions_of<'a>(
        &'a self,
        sub: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SessionKey>, StoreError>> {
        async move {
            // Under every cookie_secret's name: entries written before the oldest secret was
            // retired are still found.
            let mut members: Vec<(String, String)> = Vec::new();
            for index in self.redis.keys("u", sub.as_bytes()) {
                let found: Vec<String> = self
                    .redis
                    .query("index_read", redis::cmd("SMEMBERS").arg(&index))
                    .await?;
                members.extend(found.into_iter().map(|m| (index.clone(), m)));
            }
            let mut live: Vec<SessionKey> = Vec::with_capacity(members.len());
            for (index, m) in members {
                let id = hex::decode(&m)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok());
                let Some(id) = id else { continue };
                let key = SessionKey::from_id(id);
                let exists: i64 = self
                    .redis
                    .query(
                        "index_read",
                        redis::cmd("EXISTS").arg(self.record_key(&key)),
                    )
                    .await?;
                if exists == 1 {
                    if !live.contains(&key) {
                        live.push(key);
                    }
                } else {
                    let _: i64 = self
                        .redis
                        .query("index_remove", redis::cmd("SREM").arg(&index).arg(&m))
                        .await?;
                }
            }
            Ok(live)
        }
        .boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        async move { self.redis.ping().await }.boxed()
    }

    fn count(&self) -> u64 {
        // Counting would scan every replica's keys; the metric is per process in memory mode.
        0
    }
}
