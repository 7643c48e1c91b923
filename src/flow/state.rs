//! The `state` of the redirect flows (provider sign-in, provider binding, redirect captcha):
//! sealed with [`Sealer`] (AEAD, keys from the keyring), so it can be neither read nor altered
//! on its way through CloudBase, the provider and the browser.
//!
//! It carries the flow kind, a nonce, the return URL, the provider id, the time it was made,
//! and an HMAC of the browser's CSRF cookie, which binds it to the browser that started the
//! flow (the cookie is reused, so several tabs may sign in at once). The nonce is the id of the
//! flow-store record holding the rest of the flow: the callback takes that record atomically,
//! so a state is good once. A state lives ten minutes by the injected clock and is refused at
//! another kind's callback. Why a state was refused is for the log only; the value never is.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::seal::Sealer;
use super::store::Browser;
use crate::clock::SharedClock;
use crate::keyring::Keys;

/// How long a state is good for.
pub const STATE_TTL_SECS: u64 = 600;

/// The longest `state` accepted at a callback (a long return URL makes a long state).
pub const MAX_STATE_LEN: usize = 12 * 1024;

/// How far in the future a state's time may be (clock skew between replicas).
const MAX_SKEW_SECS: u64 = 60;

const AAD: &[u8] = b"cloudbase-gateway/state/v1";

/// Which flow a state belongs to; a state is accepted only at its own kind's callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    /// Provider sign-in (`/__auth/callback`).
    Provider,
    /// Linking a provider to the signed-in user (`/__auth/callback`).
    ProviderBind,
    /// A redirect captcha (`/__auth/captcha/callback`).
    Captcha,
}

/// What a state says, once opened and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateClaims {
    /// The flow kind.
    pub kind: StateKind,
    /// The id of the flow-store record this state spends.
    pub nonce: String,
    /// The validated return URL.
    pub rd: String,
    /// The provider id (provider flows), else empty.
    pub provider: String,
    /// Unix seconds when it was made.
    pub created_at: u64,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    k: StateKind,
    n: String,
    r: String,
    p: String,
    t: u64,
    b: String,
}

/// Why a state was refused (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateError {
    /// No `state` parameter.
    Missing,
    /// Longer than [`MAX_STATE_LEN`].
    Oversized,
    /// Not base64url.
    Malformed,
    /// Does not open: altered, truncated, or sealed under a key this gateway does not have.
    Forged,
    /// Another flow's state.
    WrongKind,
    /// Older than ten minutes (or from the future).
    Expired,
    /// Made for another browser (another CSRF cookie, or none).
    OtherBrowser,
    /// Already used, or its flow record is gone.
    Used,
}

impl StateError {
    /// A word for the log.
    pub fn reason(self) -> &'static str {
        match self {
            StateError::Missing => "missing",
            StateError::Oversized => "oversized",
            StateError::Malformed => "malformed",
            StateError::Forged => "forged",
            StateError::WrongKind => "wrong_kind",
            StateError::Expired => "expired",
            StateError::OtherBrowser => "other_browser",
            StateError::Used => "used",
        }
    }
}

/// Mints and checks states.
#[derive(Debug)]
pub struct States {
    sealer: Sealer,
    browser_keys: Keys,
    clock: SharedClock,
}

impl States {
    /// States sealed by `sealer`, bound to browsers with `browser_keys`, timed by `clock`.
    pub fn new(sealer: Sealer, browser_keys: Keys, clock: SharedClock) -> States {
        States {
            sealer,
            browser_keys,
            clock,
        }
    }

    /// The sealer, also used for pending steps (with their own associated data).
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    fn binding(&self, browser: Browser) -> [u8; 32] {
        self.browser_keys.sign(browser.as_bytes())
    }

    /// A sealed state for a `kind` flow of `browser` whose record is `nonce`.
    pub fn mint(
        &self,
        kind: StateKind,
        nonce: &str,
        rd: &str,
        provider: &str,
        browser: Browser,
    ) -> String {
        let wire = Wire {
            k: kind,
            n: nonce.to_string(),
            r: rd.to_string(),
            p: provider.to_string(),
            t: self.clock.unix_secs(),
            b: URL_SAFE_NO_PAD.encode(self.binding(browser)),
        };
        let json = serde_json::to_vec(&wire).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(self.sealer.seal(AAD, &json))
    }

    /// The claims of `raw` when it is a state this gateway sealed, of one of `kinds`, less than
    /// ten minutes old, made for `browser`. The caller then spends the nonce.
    ///
    /// Fails with the [`StateError`] saying why.
    pub fn open(
        &self,
        raw: &str,
        kinds: &[StateKind],
        browser: Option<Browser>,
    ) -> Result<StateClaims, StateError> {
        if raw.is_empty() {
            return Err(StateError::Missing);
        }
        if raw.len() > MAX_STATE_LEN {
            return Err(StateError::Oversized);
        }
        let blob = URL_SAFE_NO_PAD
            .decode(raw)
            .map_err(|_| StateError::Malformed)?;
        let json = self.sealer.open(AAD, &blob).ok_or(StateError::Forged)?;
        let wire: Wire = serde_json::from_slice(&json).map_err(|_| StateError::Forged)?;
        if !kinds.contains(&wire.k) {
            return Err(StateError::WrongKind);
        }
        let now = self.clock.unix_secs();
        if wire.t + STATE_TTL_SECS < now || wire.t > now + MAX_SKEW_SECS {
            return Err(StateError::Expired);
        }
        let tag = URL_SAFE_NO_PAD
            .decode(&wire.b)
            .map_err(|_| StateError::Forged)?;
        match browser {
            Some(b) if self.browser_keys.verify(b.as_bytes(), &tag) => {}
            _ => return Err(StateError::OtherBrowser),
        }
        Ok(StateClaims {
            kind: wire.k,
            nonce: wire.n,
            rd: wire.r,
            provider: wire.p,
            created_at: wire.t,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::entropy::SeededEntropy;
    use crate::keyring::Keyring;
    use crate::secret::Secret;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    fn states(clock: Arc<ManualClock>) -> States {
        let e = Arc::new(SeededEntropy::new(9));
        let ring = Keyring::new(Some(&[Secret::new("k".repeat(32))]), &*e);
        States::new(
            Sealer::new(&ring.derive("state-seal"), e),
            ring.derive("state-browser"),
            clock,
        )
    }

    #[test]
    fn a_state_opens_once_checked_and_never_otherwise() {
        let clock = Arc::new(ManualClock::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
        ));
        let s = states(clock.clone());
        let me = Browser::from_csrf("mine");
        let raw = s.mint(StateKind::Provider, "nonce", "/back", "github", me);
        assert!(!raw.contains("back") && !raw.contains("github"), "sealed");
        let claims = s.open(&raw, &[StateKind::Provider], Some(me)).unwrap();
        assert_eq!(
            (
                claims.kind,
                claims.nonce.as_str(),
                claims.rd.as_str(),
                claims.provider.as_str()
            ),
            (StateKind::Provider, "nonce", "/back", "github")
        );
        let other = Browser::from_csrf("theirs");
        assert_eq!(
            s.open(&raw, &[StateKind::Provider], Some(other)),
            Err(StateError::OtherBrowser)
        );
        assert_eq!(
            s.open(&raw, &[StateKind::Provider], None),
            Err(StateError::OtherBrowser)
        );
        assert_eq!(
            s.open(&raw, &[StateKind::Captcha], Some(me)),
            Err(StateError::WrongKind)
        );
        assert_eq!(
            s.open("", &[StateKind::Provider], Some(me)),
            Err(StateError::Missing)
        );
        assert_eq!(
            s.open("!!", &[StateKind::Provider], Some(me)),
            Err(StateError::Malformed)
        );
        assert_eq!(
            s.open(
                &"A".repeat(MAX_STATE_LEN + 1),
                &[StateKind::Provider],
                Some(me)
            ),
            Err(StateError::Oversized)
        );
        clock.advance(Duration::from_secs(STATE_TTL_SECS + 1));
        assert_eq!(
            s.open(&raw, &[StateKind::Provider], Some(me)),
            Err(StateError::Expired)
        );
    }
}
