//! Session logic on top of a [`SessionStore`]: starting a session from CloudBase credentials,
//! finding the session behind a cookie, keeping its access token fresh (one refresh per
//! session however many requests arrive at once) and ending it. No HTTP framework types.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::cookie::CookieFactory;
use super::{SessionKey, SessionRecord, SessionStore, StoreError, UserSnapshot};
use crate::clock::SharedClock;
use crate::cloudbase::client::{CallContext, CloudBaseClient};
use crate::cloudbase::types::{Credentials, UserProfile};
use crate::entropy::SharedEntropy;
use crate::metrics::Metrics;

/// Access-token life assumed when CloudBase does not say (the documented default).
const DEFAULT_EXPIRES_IN: u64 = 7200;
/// After CloudBase failed to answer a refresh, requests skip refreshing for this long while
/// the current token is still valid, instead of each waiting for a timeout.
const OUTAGE_COOLDOWN_SECS: u64 = 10;
/// `last_seen` is written at most this often per session.
const TOUCH_EVERY_SECS: u64 = 60;

/// A session found behind a cookie.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Its store key.
    pub key: SessionKey,
    /// The record as of now.
    pub record: Arc<SessionRecord>,
}

/// Why a session could not be made fresh.
#[derive(Debug, thiserror::Error)]
pub enum FreshError {
    /// CloudBase refused the refresh token: the session is gone and the user signs in again.
    #[error("session ended")]
    Ended,
    /// CloudBase cannot be reached and the access token has expired.
    #[error("CloudBase unavailable")]
    Unavailable,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A newly started session: the cookie value to set and how long it lives.
pub struct Started {
    /// The store key.
    pub key: SessionKey,
    /// The signed cookie value.
    pub cookie_value: String,
    /// Max-Age for the cookie.
    pub max_age_secs: u64,
    /// The stored record.
    pub record: Arc<SessionRecord>,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("sub", &self.record.sub)
            .field("max_age_secs", &self.max_age_secs)
            .finish_non_exhaustive()
    }
}

/// Sessions, end to end.
pub struct SessionManager {
    store: Arc<dyn SessionStore>,
    cookies: CookieFactory,
    clock: SharedClock,
    entropy: SharedEntropy,
    ttl: Duration,
    margin: Duration,
    metrics: Arc<Metrics>,
    cooldown: Mutex<HashMap<SessionKey, u64>>,
}

/// The profile fields kept for the upstream.
pub fn snapshot(profile: &UserProfile, creds_groups: &[String]) -> UserSnapshot {
    let mut groups: Vec<String> = profile.groups.iter().map(|g| g.id.clone()).collect();
    for g in creds_groups {
        if !groups.contains(g) {
            groups.push(g.clone());
        }
    }
    UserSnapshot {
        name: profile.name.clone(),
        username: profile.username.clone(),
        email: profile.email.clone(),
        phone: profile.phone_number.clone(),
        picture: profile.picture.clone(),
        groups,
    }
}

impl SessionManager {
    /// A manager over `store`, with sessions living `ttl` and refreshed `margin` before expiry.
    pub fn new(
        store: Arc<dyn SessionStore>,
        cookies: CookieFactory,
        clock: SharedClock,
        entropy: SharedEntropy,
        ttl: Duration,
        margin: Duration,
        metrics: Arc<Metrics>,
    ) -> SessionManager {
        SessionManager {
            store,
            cookies,
            clock,
            entropy,
            ttl,
            margin,
            metrics,
            cooldown: Mutex::new(HashMap::new()),
        }
    }

    /// The cookie factory.
    pub fn cookies(&self) -> &CookieFactory {
        &self.cookies
    }

    /// The store (for `/ready` and the active-sessions metric).
    pub fn store(&self) -> &dyn SessionStore {
        self.store.as_ref()
    }

    /// A fresh device id for a browser's CloudBase calls.
    pub fn new_device_id(&self) -> String {
        self.entropy.hex_id()
    }

    /// Starts a session for `creds` under a brand-new handle (never reusing one, so a planted
    /// cookie cannot be fixed onto a victim's sign-in).
    ///
    /// Fails when the store fails.
    pub async fn start(
        &self,
        creds: &Credentials,
        user: UserSnapshot,
        device_id: &str,
    ) -> Result<Started, StoreError> {
        let now = self.clock.unix_secs();
        let (handle, cookie_value) = self.cookies.new_handle(self.entropy.as_ref());
        let key = SessionKey::from_handle(&handle.0);
        let record = SessionRecord {
            access_token: creds.access_token.clone(),
            refresh_token: creds.refresh_token.clone(),
            expires_at: now + expires_in(creds),
            refresh_expires_at: now + self.ttl.as_secs(),
            scope: creds.scope.clone(),
            sub: creds.sub.clone(),
            user,
            device_id: device_id.to_string(),
            created_at: now,
            last_seen: now,
            version: 1,
            headers: Default::default(),
        };
        self.store.put(&key, record.clone()).await?;
        Ok(Started {
            key,
            cookie_value,
            max_age_secs: self.ttl.as_secs(),
            record: Arc::new(record),
        })
    }

    /// The session behind a cookie value, or `None` for a missing, forged or garbled cookie
    /// (refused before any store lookup) or a session that no longer exists.
    ///
    /// Fails when the store fails.
    pub async fn load(&self, cookie_value: Option<&str>) -> Result<Option<Loaded>, StoreError> {
        let Some(handle) = cookie_value.and_then(|v| self.cookies.open(v)) else {
            return Ok(None);
        };
        let key = SessionKey::from_handle(&handle.0);
        Ok(self
            .store
            .get(&key)
            .await?
            .map(|record| Loaded { key, record }))
    }

    fn needs_refresh(&self, r: &SessionRecord, now: u64) -> bool {
        r.expires_at.saturating_sub(now) < self.margin.as_secs()
    }

    /// The session with an access token that has more than the margin left, refreshing it
    /// through CloudBase when needed. Concurrent callers for one session wait for a single
    /// refresh and share its result. A refused refresh token ends the session (anonymous
    /// sessions sign in again with the same device id, as the SDK does). While CloudBase is
    /// unreachable the current token is used for as long as it is valid.
    ///
    /// Fails with [`FreshError::Ended`] (signed out), [`FreshError::Unavailable`] (CloudBase
    /// down and the token expired) or a store error.
    pub async fn fresh(
        &self,
        client: &CloudBaseClient,
        loaded: Loaded,
    ) -> Result<Loaded, FreshError> {
        let now = self.clock.unix_secs();
        if !self.needs_refresh(&loaded.record, now) {
            return Ok(loaded);
        }
        if loaded.record.expires_at > now && self.cooling_down(&loaded.key, now) {
            return Ok(loaded);
        }
        let key = loaded.key;
        let _lock = self.store.refresh_lock(&key).await?;
        // Whoever held the lock before us (here or on another replica) may have refreshed
        // already: read past any cache.
        let Some(current) = self.store.get_uncached(&key).await? else {
            return Err(FreshError::Ended);
        };
        let now = self.clock.unix_secs();
        if !self.needs_refresh(&current, now) {
            return Ok(Loaded {
                key,
                record: current,
            });
        }
        if current.expires_at > now && self.cooling_down(&key, now) {
            return Ok(Loaded {
                key,
                record: current,
            });
        }

        let ctx = CallContext::new(current.device_id.clone());
        let result = match &current.refresh_token {
            Some(rt) => client.refresh(&ctx, rt).await,
            None if current.is_anonymous() => client.signin_anonymously(&ctx, true).await,
            None => {
                self.store.delete(&key).await?;
                self.metrics.refresh("ended");
                return Err(FreshError::Ended);
            }
        };
        let creds = match result {
            Ok(creds) => {
                self.metrics.refresh("ok");
                self.cooldown.lock().remove(&key);
                creds
            }
            Err(e) if e.is_unavailable() || !ends_session(&e) => {
                self.metrics.refresh("unavailable");
                // Counted from after the call: a timeout can take as long as the cool-down.
                let after = self.clock.unix_secs();
                {
                    let mut cooldown = self.cooldown.lock();
                    // Sessions that never come back must not pile up after a long outage.
                    if cooldown.len() >= 4096 {
                        cooldown.retain(|_, until| *until > after);
                    }
                    cooldown.insert(key, after + OUTAGE_COOLDOWN_SECS);
                }
                tracing::warn!(
                    error = e.code(),
                    request_id = e.request_id(),
                    "refresh failed: CloudBase unavailable or refusing for now"
                );
                return if current.expires_at > after {
                    Ok(Loaded {
                        key,
                        record: current,
                    })
                } else {
                    Err(FreshError::Unavailable)
                };
            }
            Err(e) if current.is_anonymous() => {
                // The SDK's rule: a failed anonymous refresh signs in again on the same device.
                tracing::info!(
                    error = e.code(),
                    "anonymous refresh refused; signing in again"
                );
                match client.signin_anonymously(&ctx, true).await {
                    Ok(creds) => {
                        self.metrics.refresh("anonymous_resign_in");
                        creds
                    }
                    Err(e) => {
                        tracing::warn!(error = e.code(), "anonymous re-sign-in failed");
                        self.store.delete(&key).await?;
                        self.metrics.refresh("ended");
                        return Err(FreshError::Ended);
                    }
                }
            }
            Err(e) => {
                tracing::info!(error = e.code(), "refresh refused; session ended");
                self.store.delete(&key).await?;
                self.metrics.refresh("ended");
                return Err(FreshError::Ended);
            }
        };

        let now = self.clock.unix_secs();
        let mut next = (*current).clone();
        next.access_token = creds.access_token.clone();
        if let Some(rt) = &creds.refresh_token {
            next.refresh_token = Some(rt.clone());
        }
        next.expires_at = now + expires_in(&creds);
        next.refresh_expires_at = now + self.ttl.as_secs();
        if !creds.scope.is_empty() {
            next.scope = creds.scope.clone();
        }
        if !creds.sub.is_empty() {
            next.sub = creds.sub.clone();
        }
        for g in &creds.groups {
            if !next.user.groups.contains(g) {
                next.user.groups.push(g.clone());
            }
        }
        next.last_seen = now;
        next.version = current.version + 1;
        if self
            .store
            .compare_and_swap(&key, current.version, next.clone())
            .await?
        {
            Ok(Loaded {
                key,
                record: Arc::new(next),
            })
        } else {
            // Signed out while we refreshed: the new tokens die with the session.
            Err(FreshError::Ended)
        }
    }

    fn cooling_down(&self, key: &SessionKey, now: u64) -> bool {
        let mut map = self.cooldown.lock();
        match map.get(key) {
            Some(until) if *until > now => true,
            Some(_) => {
                map.remove(key);
                false
            }
            None => false,
        }
    }

    /// Whether the session started (its user signed in) less than `within` ago, by the
    /// injected clock: recent enough to link a sign-in method without confirming who they are
    /// again.
    pub fn signed_in_within(&self, loaded: &Loaded, within: Duration) -> bool {
        self.clock
            .unix_secs()
            .saturating_sub(loaded.record.created_at)
            < within.as_secs()
    }

    /// Replaces the session's user snapshot (after an account change). Returns whether it was
    /// written: a concurrent refresh wins, and the next sign-in refreshes the snapshot anyway.
    ///
    /// Fails when the store fails.
    pub async fn update_user(
        &self,
        loaded: &Loaded,
        user: UserSnapshot,
    ) -> Result<bool, StoreError> {
        let mut next = (*loaded.record).clone();
        next.user = user;
        next.version += 1;
        self.store
            .compare_and_swap(&loaded.key, loaded.record.version, next)
            .await
    }

    /// Records that the session was used, at most once a minute.
    pub async fn touch(&self, loaded: &Loaded) {
        let now = self.clock.unix_secs();
        if now.saturating_sub(loaded.record.last_seen) < TOUCH_EVERY_SECS {
            return;
        }
        let mut next = (*loaded.record).clone();
        next.last_seen = now;
        // The version stays: `last_seen` is advisory, and bumping it would make a concurrent
        // refresh's compare-and-swap fail and throw away freshly rotated tokens. If a refresh
        // wins instead, this write fails and the refresh's newer last_seen stands.
        let _ = self
            .store
            .compare_and_swap(&loaded.key, loaded.record.version, next)
            .await;
    }

    /// Ends a session: revokes its access token at CloudBase (best effort: the session is
    /// deleted even when CloudBase cannot be reached) and deletes the record.
    ///
    /// Fails when the store fails.
    pub async fn end(&self, client: &CloudBaseClient, loaded: &Loaded) -> Result<(), StoreError> {
        let ctx = CallContext::new(loaded.record.device_id.clone());
        if let Err(e) = client.revoke(&ctx, &loaded.record.access_token).await {
            tracing::warn!(
                error = e.code(),
                request_id = e.request_id(),
                "revoke failed"
            );
        }
        self.cooldown.lock().remove(&loaded.key);
        self.store.delete(&loaded.key).await
    }

    /// "Sign out everywhere": every session of the user of `loaded` ends, this one included,
    /// here and at CloudBase (`user/revoke/all`; the gateway's sessions end even when
    /// CloudBase cannot be reached). Returns whether CloudBase confirmed it, so the user can be
    /// told when their other apps may still be signed in.
    ///
    /// Fails when the store fails.
    pub async fn end_everywhere(
        &self,
        client: &CloudBaseClient,
        loaded: &Loaded,
    ) -> Result<bool, StoreError> {
        let ctx = CallContext::new(loaded.record.device_id.clone());
        let revoked = match client.revoke_all(&ctx, &loaded.record.access_token).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    error = e.code(),
                    request_id = e.request_id(),
                    "revoking every device at CloudBase failed"
                );
                false
            }
        };
        self.end_all_of(client, &loaded.record.sub, None).await?;
        Ok(revoked)
    }

    /// Ends every session of user `sub` but `keep`: each one's token is revoked at CloudBase
    /// (best effort) and its record deleted, so other browsers are signed out at their next
    /// request and no refresh can bring them back. Returns how many ended.
    ///
    /// Fails when the store fails (the sessions ended so far stay ended).
    pub async fn end_all_of(
        &self,
        client: &CloudBaseClient,
        sub: &str,
        keep: Option<&SessionKey>,
    ) -> Result<usize, StoreError> {
        let mut ended = 0;
        for key in self.store.sessions_of(sub).await? {
            if Some(&key) == keep {
                continue;
            }
            match self.store.get(&key).await? {
                Some(record) => self.end(client, &Loaded { key, record }).await?,
                None => {
                    // A shared store cannot open another browser's record (it is sealed under
                    // that browser's handle): it is deleted unread, and its tokens die with it.
                    self.cooldown.lock().remove(&key);
                    self.store.delete(&key).await?;
                }
            }
            ended += 1;
        }
        if ended > 0 {
            tracing::info!(sub, ended, "other sessions of the user ended");
        }
        Ok(ended)
    }
}

/// Whether a refused refresh means the tokens are dead (the user must sign in again), rather
/// than CloudBase being unable or unwilling to answer right now (rate limits, internal errors).
fn ends_session(e: &crate::cloudbase::error::CloudBaseError) -> bool {
    matches!(
        e.code(),
        Some(
            "invalid_grant"
                | "unauthenticated"
                | "permission_denied"
                | "not_found"
                | "invalid_argument"
        )
    )
}

fn expires_in(creds: &Credentials) -> u64 {
    if creds.expires_in == 0 {
        DEFAULT_EXPIRES_IN
    } else {
        creds.expires_in
    }
}
