//! Sessions: the record kept server-side for each signed-in browser, the [`SessionStore`]
//! trait every backend implements, and the in-memory backend. The cookie only ever carries an
//! opaque handle ([`cookie`]); records are keyed by a hash of it ([`SessionKey`]), so a dump of
//! the store cannot be replayed as cookies. [`manager`] holds the logic built on the store:
//! sign-in, lookup, single-flight refresh and sign-out.

pub mod cookie;
pub mod manager;
pub mod memory;
pub mod near;
pub mod redis;

use actix_web::http::header::HeaderValue;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::secret::Secret;
pub use crate::store::StoreError;

/// The store key of a session: SHA-256 of the cookie handle, and (when the handle is known)
/// the key its record is sealed with in a shared store, derived from the handle too. Neither
/// can be turned back into the handle, so neither is a usable cookie. Two keys are equal when
/// their ids are.
#[derive(Clone, Copy)]
pub struct SessionKey {
    id: [u8; 32],
    seal: Option<[u8; 32]>,
}

impl PartialEq for SessionKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for SessionKey {}

impl std::hash::Hash for SessionKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl SessionKey {
    /// The key for a (MAC-verified) 32-byte handle.
    pub fn from_handle(handle: &[u8; 32]) -> SessionKey {
        let mut seal = Sha256::new();
        seal.update(b"cloudbase-gateway/session-seal/v1\0");
        seal.update(handle);
        SessionKey {
            id: Sha256::digest(handle).into(),
            seal: Some(seal.finalize().into()),
        }
    }

    /// The key of a session known only by its id (from a user's session index): it can be
    /// deleted, not read from a shared store.
    pub fn from_id(id: [u8; 32]) -> SessionKey {
        SessionKey { id, seal: None }
    }

    /// The id (the store's name for the record).
    pub fn id(&self) -> &[u8; 32] {
        &self.id
    }

    /// The record's sealing key, when the handle was known.
    pub fn seal_key(&self) -> Option<&[u8; 32]> {
        self.seal.as_ref()
    }
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A prefix is enough to correlate log lines, and is no use to anyone else.
        write!(f, "SessionKey({}…)", hex::encode(&self.id[..4]))
    }
}

/// What the gateway knows about the signed-in user, refreshed at sign-in and on refresh.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSnapshot {
    /// Display name.
    pub name: String,
    /// User name.
    pub username: String,
    /// E-mail address.
    pub email: String,
    /// Phone number (`+86 138…`).
    pub phone: String,
    /// Avatar URL.
    pub picture: String,
    /// Group ids.
    pub groups: Vec<String>,
}

/// One session. Times are Unix seconds from the injected clock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The CloudBase access token (a JWT).
    #[serde(serialize_with = "crate::secret::expose")]
    pub access_token: Secret,
    /// The CloudBase refresh token; rotated on every refresh.
    #[serde(serialize_with = "crate::secret::expose_opt")]
    pub refresh_token: Option<Secret>,
    /// When the access token expires.
    pub expires_at: u64,
    /// When the refresh token (and so the session) expires.
    pub refresh_expires_at: u64,
    /// CloudBase scope; contains `anonymous` for anonymous sessions.
    pub scope: String,
    /// The user id.
    pub sub: String,
    /// Profile fields shown to the upstream.
    pub user: UserSnapshot,
    /// `x-device-id` used for this browser's CloudBase calls.
    pub device_id: String,
    /// When the session was created.
    pub created_at: u64,
    /// When a request last used the session (updated at most once a minute).
    pub last_seen: u64,
    /// Bumped on every write; compare-and-swap checks it.
    pub version: u64,
    /// `Bearer <access token>` and the bare token as header values, made on first use (every
    /// proxied request sends them; validating a 1 KiB token per request is measurable).
    /// Never stored, and empty again in every clone, so a refreshed record cannot keep an old
    /// token's header.
    #[serde(skip)]
    pub headers: TokenHeaders,
}

/// Header values of a record's access token, made once (see [`SessionRecord::headers`]).
#[derive(Default)]
pub struct TokenHeaders(std::sync::OnceLock<Option<(HeaderValue, HeaderValue)>>);

impl Clone for TokenHeaders {
    fn clone(&self) -> Self {
        TokenHeaders::default()
    }
}

impl std::fmt::Debug for TokenHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHeaders(redacted)")
    }
}

impl SessionRecord {
    /// `Authorization: Bearer <access token>` and the bare access token as header values;
    /// `None` when the token cannot be a header value.
    pub fn token_headers(&self) -> Option<&(HeaderValue, HeaderValue)> {
        self.headers
            .0
            .get_or_init(|| {
                let token = self.access_token.expose();
                let bearer = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
                let bare = HeaderValue::from_str(token).ok()?;
                Some((bearer, bare))
            })
            .as_ref()
    }

    /// Whether this is an anonymous CloudBase session.
    pub fn is_anonymous(&self) -> bool {
        self.scope.split_whitespace().any(|s| s == "anonymous")
    }
}

/// Held while one request refreshes a session; dropping it lets the next one in.
pub struct RefreshLock(#[allow(dead_code)] Box<dyn Send + Sync>);

impl RefreshLock {
    /// Wraps a backend's guard.
    pub fn new(guard: impl Send + Sync + 'static) -> RefreshLock {
        RefreshLock(Box::new(guard))
    }
}

/// A session backend. All methods are async so that a network store (Redis) fits without
/// changing callers.
pub trait SessionStore: Send + Sync + 'static {
    /// The record under `key`, or `None` when there is none (or it expired, or `key` has no
    /// sealing key and the backend seals records).
    ///
    /// Fails only when the backend is unreachable.
    fn get<'a>(
        &'a self,
        key: &'a SessionKey,
    ) -> BoxFuture<'a, Result<Option<Arc<SessionRecord>>, StoreError>>;

    /// The record under `key` as the backend holds it now, past any cache in front of it
    /// (what a refresh decides on, once it holds the lock).
    ///
    /// Fails only when the backend is unreachable.
    fn get_uncached<'a>(
        &'a self,
        key: &'a SessionKey,
    ) -> BoxFuture<'a, Result<Option<Arc<SessionRecord>>, StoreError>> {
        self.get(key)
    }

    /// Stores `record` under `key`, replacing any record; it lives until
    /// `record.refresh_expires_at`.
    fn put<'a>(
        &'a self,
        key: &'a SessionKey,
        record: SessionRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Removes the record under `key`, if any.
    fn delete<'a>(&'a self, key: &'a SessionKey) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Replaces the record under `key` with `record` only if the stored record's version is
    /// `expected_version`. Returns whether it was replaced (false: changed or deleted
    /// meanwhile). Used to store rotated tokens atomically.
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a SessionKey,
        expected_version: u64,
        record: SessionRecord,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Waits for, then holds, the refresh lock of one session: at most one holder per session
    /// (per process for memory, across replicas for a shared store).
    fn refresh_lock<'a>(
        &'a self,
        key: &'a SessionKey,
    ) -> BoxFuture<'a, Result<RefreshLock, StoreError>>;

    /// The keys of the live sessions of user `sub` (the per-user index that lets a password
    /// reset or "sign out everywhere" end them all). Every stored record is in it from `put`
    /// until it is deleted or expires.
    ///
    /// Fails only when the backend is unreachable.
    fn sessions_of<'a>(
        &'a self,
        sub: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SessionKey>, StoreError>>;

    /// Succeeds when the backend can be used (`/ready`).
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Approximate number of live sessions (a metric).
    fn count(&self) -> u64;
}

#[cfg(test)]
mod token_header_tests {
    use super::*;

    #[test]
    fn a_cloned_record_never_keeps_the_old_tokens_header() {
        let mut r = SessionRecord {
            access_token: Secret::new("old-token"),
            refresh_token: None,
            expires_at: 0,
            refresh_expires_at: 0,
            scope: String::new(),
            sub: String::new(),
            user: Default::default(),
            device_id: String::new(),
            created_at: 0,
            last_seen: 0,
            version: 0,
            headers: Default::default(),
        };
        assert_eq!(r.token_headers().unwrap().0, "Bearer old-token");
        let mut next = r.clone();
        next.access_token = Secret::new("new-token");
        assert_eq!(next.token_headers().unwrap().0, "Bearer new-token");
        assert_eq!(next.token_headers().unwrap().1, "new-token");
        r.access_token = Secret::new("bad\ntoken");
        assert_eq!(
            r.token_headers().unwrap().0,
            "Bearer old-token",
            "made once per record"
        );
    }
}
