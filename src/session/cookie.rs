//! The cookie factory: the only place the gateway's cookies are built, read or cleared.
//!
//! The session cookie's value is an opaque 256-bit handle and an HMAC of it from the keyring
//! (`base64url(handle) "." base64url(mac)`), checked before any store lookup. Its name takes the
//! `__Host-` prefix (or `__Secure-` when a cookie domain is set) and it is always HttpOnly,
//! Secure, SameSite=Lax, Path=/ with an explicit Max-Age. `insecure_cookie` drops Secure and the
//! prefix for plain-http development. The CSRF cookie is a random value; forms carry an HMAC of
//! it, so neither the value nor a token can be forged from the other.

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::config::CookieSettings;
use crate::entropy::Entropy;
use crate::keyring::{Keyring, Keys};

/// A verified session handle (the 32 random bytes inside a session cookie).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Handle(pub [u8; 32]);

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handle(redacted)")
    }
}

/// Lifetime of the CSRF cookie: a day, reused by every form and tab in between.
const CSRF_MAX_AGE_SECS: i64 = 24 * 3600;

/// Builds and reads the gateway's cookies.
#[derive(Debug, Clone)]
pub struct CookieFactory {
    session_name: String,
    csrf_name: String,
    lang_name: String,
    domain: Option<String>,
    secure: bool,
    session_keys: Keys,
    csrf_keys: Keys,
}

impl CookieFactory {
    /// A factory for these settings, keyed from `keyring`.
    pub fn new(settings: &CookieSettings, keyring: &Keyring) -> CookieFactory {
        let prefix = match (settings.insecure, &settings.domain) {
            (true, _) => "",
            (false, Some(_)) => "__Secure-",
            (false, None) => "__Host-",
        };
        let base = &settings.name;
        // The CSRF and language cookies are always host-only (`__Host-` when Secure), even with
        // a cookie domain: a sibling subdomain must not be able to plant a CSRF value whose
        // token it knows.
        let host_prefix = if settings.insecure { "" } else { "__Host-" };
        CookieFactory {
            session_name: format!("{prefix}{base}"),
            csrf_name: format!("{host_prefix}{base}_csrf"),
            lang_name: format!("{host_prefix}{base}_lang"),
            domain: settings.domain.clone(),
            secure: !settings.insecure,
            session_keys: keyring.derive("session-cookie"),
            csrf_keys: keyring.derive("csrf-token"),
        }
    }

    /// The session cookie's name (with its prefix).
    pub fn session_name(&self) -> &str {
        &self.session_name
    }

    /// The CSRF cookie's name (with its prefix).
    pub fn csrf_name(&self) -> &str {
        &self.csrf_name
    }

    /// The language cookie's name (with its prefix).
    pub fn lang_name(&self) -> &str {
        &self.lang_name
    }

    /// Whether `name` is one of the gateway's cookies (they never reach the upstream).
    pub fn is_ours(&self, name: &str) -> bool {
        // In any case: browsers read cookie prefixes case-insensitively, and an upstream must
        // not get past this with `CBGW_SESSION` or `__host-cbgw_session`.
        [&self.session_name, &self.csrf_name, &self.lang_name]
            .iter()
            .any(|ours| name.eq_ignore_ascii_case(ours))
    }

    /// The cookie remembering a language chosen with `?lang=` (a year).
    pub fn lang(&self, tag: &str) -> Cookie<'static> {
        self.build_host_only(self.lang_name.clone(), tag.to_string(), 365 * 24 * 3600)
    }

    /// A fresh random handle and the signed cookie value carrying it.
    pub fn new_handle(&self, entropy: &dyn Entropy) -> (Handle, String) {
        let mut handle = [0u8; 32];
        entropy.fill(&mut handle);
        let value = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(handle),
            URL_SAFE_NO_PAD.encode(self.session_keys.sign(&handle))
        );
        (Handle(handle), value)
    }

    /// The handle in a session cookie value, when its MAC verifies under any key. Garbled,
    /// truncated or forged values give `None` without touching the store.
    pub fn open(&self, value: &str) -> Option<Handle> {
        // 43 + 1 + 43 characters: anything else is not ours.
        if value.len() != 87 {
            return None;
        }
        let (h, m) = value.split_once('.')?;
        let handle: [u8; 32] = URL_SAFE_NO_PAD.decode(h).ok()?.try_into().ok()?;
        let mac = URL_SAFE_NO_PAD.decode(m).ok()?;
        self.session_keys
            .verify(&handle, &mac)
            .then_some(Handle(handle))
    }

    /// The session cookie carrying `value`, living `max_age_secs`.
    pub fn session(&self, value: String, max_age_secs: u64) -> Cookie<'static> {
        self.build(
            self.session_name.clone(),
            value,
            max_age_secs.min(i64::MAX as u64) as i64,
        )
    }

    /// A cookie that deletes the session cookie.
    pub fn clear_session(&self) -> Cookie<'static> {
        self.build(self.session_name.clone(), String::new(), 0)
    }

    /// A new random CSRF cookie value and its cookie.
    pub fn new_csrf(&self, entropy: &dyn Entropy) -> (String, Cookie<'static>) {
        let value = entropy.token(32);
        let cookie = self.build_host_only(self.csrf_name.clone(), value.clone(), CSRF_MAX_AGE_SECS);
        (value, cookie)
    }

    /// A cookie that deletes the CSRF cookie (at sign-out: flows the browser had in progress
    /// are bound to it, and end with it).
    pub fn clear_csrf(&self) -> Cookie<'static> {
        self.build_host_only(self.csrf_name.clone(), String::new(), 0)
    }

    /// The token forms carry for the CSRF cookie `csrf_value`.
    pub fn csrf_token(&self, csrf_value: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.csrf_keys.sign(csrf_value.as_bytes()))
    }

    /// Whether `token` belongs to the CSRF cookie `csrf_value` (constant time).
    pub fn csrf_ok(&self, csrf_value: &str, token: &str) -> bool {
        if csrf_value.is_empty() || csrf_value.len() > 64 {
            return false;
        }
        match URL_SAFE_NO_PAD.decode(token) {
            Ok(tag) => self.csrf_keys.verify(csrf_value.as_bytes(), &tag),
            Err(_) => false,
        }
    }

    fn build_host_only(&self, name: String, value: String, max_age_secs: i64) -> Cookie<'static> {
        Cookie::build(name, value)
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .max_age(CookieDuration::seconds(max_age_secs))
            .finish()
    }

    fn build(&self, name: String, value: String, max_age_secs: i64) -> Cookie<'static> {
        let mut b = Cookie::build(name, value)
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .max_age(CookieDuration::seconds(max_age_secs));
        if let Some(domain) = &self.domain {
            b = b.domain(domain.clone());
        }
        b.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;
    use crate::secret::Secret;

    fn settings(domain: Option<&str>, insecure: bool) -> CookieSettings {
        CookieSettings {
            name: "cbgw_session".into(),
            domain: domain.map(str::to_string),
            secrets: None,
            insecure,
        }
    }

    fn ring(secrets: &[&str]) -> Keyring {
        let s: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
        Keyring::new(Some(&s), &SeededEntropy::new(0))
    }

    #[test]
    fn names_follow_the_prefix_rules() {
        let k = ring(&[&"a".repeat(32)]);
        assert_eq!(
            CookieFactory::new(&settings(None, false), &k).session_name(),
            "__Host-cbgw_session"
        );
        assert_eq!(
            CookieFactory::new(&settings(Some("corp.example.com"), false), &k).session_name(),
            "__Secure-cbgw_session"
        );
        let sso = CookieFactory::new(&settings(Some("corp.example.com"), false), &k);
        assert_eq!(sso.csrf_name(), "__Host-cbgw_session_csrf", "host-only");
        let (_, c) = sso.new_csrf(&SeededEntropy::new(1));
        assert_eq!(c.domain(), None);
        let dev = CookieFactory::new(&settings(None, true), &k);
        assert_eq!(dev.session_name(), "cbgw_session");
        assert_eq!(dev.csrf_name(), "cbgw_session_csrf");
    }

    #[test]
    fn handles_verify_under_rotated_keys_and_forgeries_fail() {
        let e = SeededEntropy::new(7);
        let old = CookieFactory::new(&settings(None, false), &ring(&[&"o".repeat(32)]));
        let (handle, value) = old.new_handle(&e);
        let rotated = CookieFactory::new(
            &settings(None, false),
            &ring(&[&"n".repeat(32), &"o".repeat(32)]),
        );
        assert_eq!(rotated.open(&value), Some(handle));
        let other = CookieFactory::new(&settings(None, false), &ring(&[&"x".repeat(32)]));
        assert_eq!(other.open(&value), None);
        // Flip every character in turn.
        for i in 0..value.len() {
            let mut bytes = value.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            if tampered != value {
                assert_eq!(old.open(&tampered), None, "position {i}");
            }
        }
        for junk in [
            "",
            ".",
            "abc",
            &value[..86],
            &format!("{value}A"),
            "é".repeat(40).as_str(),
        ] {
            assert_eq!(old.open(junk), None);
        }
    }

    #[test]
    fn cookies_carry_every_attribute_and_csrf_tokens_bind() {
        let e = SeededEntropy::new(3);
        let f = CookieFactory::new(&settings(None, false), &ring(&[&"a".repeat(32)]));
        let c = f.session("v".into(), 3600).to_string();
        for part in [
            "__Host-cbgw_session=v",
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=3600",
        ] {
            assert!(c.contains(part), "{part} missing from {c}");
        }
        assert!(!c.contains("Domain"), "{c}");
        let cleared = f.clear_session().to_string();
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
        let (value, _) = f.new_csrf(&e);
        let token = f.csrf_token(&value);
        assert!(f.csrf_ok(&value, &token));
        assert!(!f.csrf_ok(&value, &f.csrf_token("other")));
        assert!(!f.csrf_ok("", &token));
        assert!(!f.csrf_ok(&value, "!!"));
    }
}
