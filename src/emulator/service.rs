//! The emulator's behaviour: users, codes, tokens, providers, tickets and captchas in memory,
//! one method per CloudBase endpoint. No HTTP framework types: [`super::http`] turns requests
//! into a [`Call`] and the answers into JSON.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::DecodingKey;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Digest;

use super::error::EmuError;
use super::keys::TokenSigner;
use crate::clock::{Clock, OffsetClock};
use crate::entropy::SharedEntropy;
use crate::jwt::verify_rs256;

/// A verification code is valid this long (spec §4.2).
pub const CODE_TTL: u64 = 600;
/// Wrong guesses allowed before a code dies with `aborted`.
pub const CODE_ATTEMPTS: u32 = 5;
/// Consecutive wrong passwords before `invalid_status`, and how long the lock lasts.
pub const PASSWORD_ATTEMPTS: u32 = 10;
const PASSWORD_LOCK_SECS: u64 = 900;
const SUDO_TTL: u64 = 900;
const PROVIDER_TOKEN_TTL: u64 = 3600;
const PROVIDER_CODE_TTL: u64 = 600;
const CAPTCHA_TOKEN_TTL: u64 = 600;
const CAPTCHA_IMAGE_TTL: u64 = 300;
const MAX_RECORDED: usize = 10_000;
/// Longest token lifetime and largest clock step accepted: ten years keeps every
/// `now + ttl` far from overflow.
pub const MAX_TTL: u64 = 10 * 365 * 24 * 3600;
/// Expired records are swept every this many calls.
const PRUNE_EVERY: u64 = 256;

/// A user as the users file describes one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    /// User name.
    #[serde(default)]
    pub username: Option<String>,
    /// E-mail address.
    #[serde(default)]
    pub email: Option<String>,
    /// Phone number (`+86 138…`; other forms are normalised).
    #[serde(default)]
    pub phone_number: Option<String>,
    /// Password; none means the user must use codes or providers.
    #[serde(default)]
    pub password: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Group ids.
    #[serde(default)]
    pub groups: Vec<String>,
    /// `ACTIVE` (default), `BLOCKED` or `PENDING`.
    #[serde(default)]
    pub status: Option<String>,
}

/// The users file: `[[users]]` tables.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersFile {
    /// The users.
    #[serde(default)]
    pub users: Vec<SeedUser>,
}

/// Switches changed through `POST /__emulator/settings`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Settings {
    /// Protected calls (`signin`, `verification`) demand a captcha token.
    pub captcha_required: bool,
    /// Anonymous sign-in is on.
    pub anonymous_enabled: bool,
    /// New users may register.
    pub signup_enabled: bool,
}

/// One incoming call, reduced to what the endpoints read.
#[derive(Debug, Default)]
pub struct Call {
    /// `x-device-id`.
    pub device_id: Option<String>,
    /// The bearer token, when `Authorization: Bearer` was sent.
    pub bearer: Option<String>,
    /// `captcha_token` query parameter or `x-captcha-token` header.
    pub captcha_token: Option<String>,
    /// Query parameters.
    pub query: HashMap<String, String>,
    /// The JSON body (`{}` when empty).
    pub body: Value,
    /// The emulator's origin as the caller reached it, for URLs of its own pages.
    pub origin: String,
}

impl Call {
    fn str(&self, key: &str) -> Option<&str> {
        self.body
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// A string field exactly as sent (passwords are not trimmed); `None` when absent or empty.
    fn raw(&self, key: &str) -> Option<&str> {
        self.body
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    fn require_raw(&self, key: &str) -> Result<&str, EmuError> {
        self.raw(key)
            .ok_or_else(|| EmuError::invalid_argument(format!("{key} is required")))
    }

    fn require(&self, key: &str) -> Result<&str, EmuError> {
        self.str(key)
            .ok_or_else(|| EmuError::invalid_argument(format!("{key} is required")))
    }

    fn flag(&self, key: &str) -> bool {
        self.body.get(key).and_then(Value::as_bool).unwrap_or(false)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ContactKey {
    Email(String),
    Phone(String),
}

impl ContactKey {
    fn to(&self) -> &str {
        match self {
            ContactKey::Email(v) | ContactKey::Phone(v) => v,
        }
    }
}

#[derive(Debug, Clone)]
struct Link {
    provider_id: String,
    sub: String,
    name: String,
}

#[derive(Debug, Clone)]
struct User {
    uid: String,
    username: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    password: Option<String>,
    name: String,
    picture: String,
    groups: Vec<String>,
    status: String,
    anonymous: bool,
    custom_uid: Option<String>,
    links: Vec<Link>,
    created_at: u64,
    updated_at: u64,
    failed_passwords: u32,
    locked_until: u64,
}

impl User {
    /// An active, registered user with nothing but an id; callers fill in the rest.
    fn new(uid: String, now: u64) -> Self {
        Self {
            uid,
            username: None,
            email: None,
            phone: None,
            password: None,
            name: String::new(),
            picture: String::new(),
            groups: Vec::new(),
            status: "ACTIVE".into(),
            anonymous: false,
            custom_uid: None,
            links: Vec::new(),
            created_at: now,
            updated_at: now,
            failed_passwords: 0,
            locked_until: 0,
        }
    }
    fn has(&self, contact: &ContactKey) -> bool {
        match contact {
            ContactKey::Email(e) => self
                .email
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(e)),
            ContactKey::Phone(p) => self.phone.as_deref() == Some(p.as_str()),
        }
    }
}

#[derive(Debug)]
struct Session {
    uid: String,
    scope: &'static str,
}

#[derive(Debug)]
struct TokenRec {
    sid: String,
    exp: u64,
}

#[derive(Debug)]
struct Verification {
    contact: ContactKey,
    code: String,
    exp: u64,
    attempts: u32,
    used: bool,
}

#[derive(Debug)]
struct Expiring<T> {
    value: T,
    exp: u64,
}

#[derive(Debug)]
struct ProviderCode {
    provider_id: String,
    redirect_uri: String,
    login: String,
}

#[derive(Debug, Clone)]
struct ProviderIdentity {
    provider_id: String,
    sub: String,
    name: String,
}

#[derive(Debug)]
struct CaptchaImage {
    answer: String,
}

/// A pending redirect captcha: where the captcha page sends the browser afterwards.
#[derive(Debug, Clone)]
pub struct CaptchaSession {
    /// The caller's callback.
    pub redirect_uri: String,
    /// The caller's state, returned untouched.
    pub state: String,
}

/// A test-injected failure (`POST /__emulator/faults`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Endpoint path, e.g. `/auth/v1/token`; every `/auth/` path when absent.
    #[serde(default)]
    pub path: Option<String>,
    /// Error name to answer with.
    #[serde(default)]
    pub error: Option<String>,
    /// Numeric code for `error`.
    #[serde(default)]
    pub error_code: Option<i64>,
    /// HTTP status (default 503).
    #[serde(default)]
    pub status: Option<u16>,
    /// Wait this long before answering.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Answer this raw text instead of JSON (an undecodable body).
    #[serde(default)]
    pub raw_body: Option<String>,
    /// Close the connection in the middle of the response (after the delay, if any).
    #[serde(default)]
    pub drop: Option<bool>,
    /// How many calls it affects (default 1).
    #[serde(default)]
    pub times: Option<u32>,
}

/// What a fault does to one call.
#[derive(Debug, Clone)]
pub struct FaultAction {
    /// Wait first.
    pub delay: Duration,
    /// Then break the connection instead of answering.
    pub drop: bool,
    /// Then answer this instead of handling the call: status and body (JSON or raw).
    pub answer: Option<(u16, String, bool)>,
}

/// One recorded request (`GET /__emulator/requests`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Lower-case header names → values; Authorization reduced to its scheme.
    pub headers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, serde::Serialize)]
struct OutboxEntry {
    to: String,
    code: String,
    verification_id: String,
    sent_at: String,
}

#[derive(Default)]
struct State {
    users: Vec<User>,
    anon_by_device: HashMap<String, String>,
    sessions: HashMap<String, Session>,
    access: HashMap<String, TokenRec>,
    refresh: HashMap<String, TokenRec>,
    verifications: HashMap<String, Verification>,
    verification_tokens: HashMap<String, Expiring<ContactKey>>,
    sudo_tokens: HashMap<String, Expiring<String>>,
    provider_codes: HashMap<String, Expiring<ProviderCode>>,
    provider_tokens: HashMap<String, Expiring<ProviderIdentity>>,
    captcha_images: HashMap<String, Expiring<CaptchaImage>>,
    captcha_tokens: HashMap<String, u64>,
    captcha_sessions: HashMap<String, Expiring<CaptchaSession>>,
    /// SHA-256 of each custom-login ticket used, until its `exp` (Unix ms): a ticket signs in
    /// once.
    used_tickets: HashMap<[u8; 32], u64>,
    outbox: Vec<OutboxEntry>,
    requests: Vec<Recorded>,
    faults: Vec<Fault>,
}

/// Options for building an [`Emulator`].
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// The environment id it pretends to be.
    pub env: String,
    /// Users to start with.
    pub users: Vec<SeedUser>,
    /// Access-token lifetime, seconds (default 7200).
    pub access_token_ttl: u64,
    /// Refresh-token lifetime, seconds (default 30 days).
    pub refresh_token_ttl: u64,
    /// `private_key_id` → PEM key (public, or the private key of `tcb_custom_login.json`), for
    /// custom-login tickets.
    pub ticket_keys: Vec<(String, String)>,
    /// Provider ids the environment has configured (besides `custom`).
    pub providers: Vec<String>,
}

impl EmulatorOptions {
    /// Defaults for `env`: no users, CloudBase's lifetimes, providers `wx_open`, `wx_mp`,
    /// `github` and `google`.
    pub fn new(env: impl Into<String>) -> Self {
        Self {
            env: env.into(),
            users: Vec::new(),
            access_token_ttl: 7200,
            refresh_token_ttl: 30 * 24 * 3600,
            ticket_keys: Vec::new(),
            providers: ["wx_open", "wx_mp", "github", "google"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// The in-memory CloudBase auth service.
pub struct Emulator {
    env: String,
    clock: Arc<OffsetClock>,
    entropy: SharedEntropy,
    signer: TokenSigner,
    access_ttl: u64,
    refresh_ttl: u64,
    ticket_keys: HashMap<String, DecodingKey>,
    providers: Vec<String>,
    settings: Mutex<Settings>,
    state: Mutex<State>,
    calls: std::sync::atomic::AtomicU64,
}

/// Why emulator options were refused.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A seed user is invalid.
    #[error("user #{index}: {message}")]
    User {
        /// 1-based position in the users file.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A ticket key is not an RSA key in PEM.
    #[error("ticket key {0}: not an RSA key in PEM")]
    TicketKey(String),
}

fn normalize_phone(input: &str) -> String {
    let compact: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if let Some(rest) = compact.strip_prefix("+86") {
        format!("+86 {rest}")
    } else if let Some(rest) = compact.strip_prefix('+') {
        // Other country codes: keep what the caller sent, with the SDK's single space if any.
        match input.trim().split_once(' ') {
            Some((cc, n)) => format!("{} {}", cc, n.replace(' ', "")),
            None => format!("+{rest}"),
        }
    } else {
        format!("+86 {compact}")
    }
}

fn valid_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.contains(char::is_whitespace)
        }
        None => false,
    }
}

fn valid_phone(phone: &str) -> bool {
    match phone.split_once(' ') {
        Some((cc, n)) => {
            cc.len() >= 2
                && cc[1..].chars().all(|c| c.is_ascii_digit())
                && (5..=15).contains(&n.len())
                && n.chars().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

/// CloudBase's user-name rule (spec §5.1): 2–48 letters, digits or `-_.:+@`, starting with a
/// letter or digit.
fn valid_username(name: &str) -> bool {
    (2..=48).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:+@".contains(c))
}

fn valid_password(pw: &str) -> Result<(), EmuError> {
    if pw.chars().count() < 6 || pw.len() > 64 {
        return Err(EmuError::invalid_argument(
            "password must be 6 to 64 characters",
        ));
    }
    Ok(())
}

fn rfc3339(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl Emulator {
    /// Builds an emulator with its own signing key.
    ///
    /// Fails when a seed user has no way to sign in, duplicates another, or a ticket key is
    /// not an RSA key.
    pub fn new(opts: EmulatorOptions, entropy: SharedEntropy) -> Result<Self, SetupError> {
        let mut seed = [0u8; 32];
        entropy.fill(&mut seed);
        let signer = TokenSigner::generate(seed, uuid_like(&*entropy));
        let mut ticket_keys = HashMap::new();
        for (id, pem) in &opts.ticket_keys {
            let key = crate::jwt::verifying_key_from_pem(pem)
                .or_else(|| crate::jwt::verifying_key_from_private_pem(pem))
                .ok_or_else(|| SetupError::TicketKey(id.clone()))?;
            ticket_keys.insert(id.clone(), key);
        }
        let emu = Self {
            env: opts.env,
            clock: Arc::new(OffsetClock::default()),
            entropy,
            signer,
            access_ttl: opts.access_token_ttl.clamp(1, MAX_TTL),
            refresh_ttl: opts.refresh_token_ttl.clamp(1, MAX_TTL),
            ticket_keys,
            providers: opts.providers,
            settings: Mutex::new(Settings {
                captcha_required: false,
                anonymous_enabled: true,
                signup_enabled: true,
            }),
            state: Mutex::new(State::default()),
            calls: std::sync::atomic::AtomicU64::new(0),
        };
        emu.seed(opts.users)?;
        Ok(emu)
    }

    fn seed(&self, users: Vec<SeedUser>) -> Result<(), SetupError> {
        let now = self.now();
        let mut st = self.state.lock();
        for (i, u) in users.into_iter().enumerate() {
            let bad = |message: String| SetupError::User {
                index: i + 1,
                message,
            };
            let email = u
                .email
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty());
            let phone = u
                .phone_number
                .map(|p| normalize_phone(&p))
                .filter(|p| p.len() > 4);
            let username = u
                .username
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty());
            if username.is_none() && email.is_none() && phone.is_none() {
                return Err(bad("needs a username, email or phone_number".into()));
            }
            if let Some(n) = &username {
                if !valid_username(n) {
                    return Err(bad(format!(
                        "username {n:?} breaks CloudBase's rule (2-48 letters, digits or -_.:+@)"
                    )));
                }
            }
            if email.as_deref().is_some_and(|e| !valid_email(e)) {
                return Err(bad("email is not an e-mail address".into()));
            }
            if phone.as_deref().is_some_and(|p| !valid_phone(p)) {
                return Err(bad("phone_number is not a phone number".into()));
            }
            let status = u
                .status
                .unwrap_or_else(|| "ACTIVE".into())
                .to_ascii_uppercase();
            if !matches!(status.as_str(), "ACTIVE" | "BLOCKED" | "PENDING") {
                return Err(bad("status must be ACTIVE, BLOCKED or PENDING".into()));
            }
            let user = User {
                name: u.name.unwrap_or_else(|| {
                    username
                        .clone()
                        .or_else(|| email.clone())
                        .unwrap_or_default()
                }),
                username,
                email,
                phone,
                password: u.password.filter(|p| !p.is_empty()),
                groups: u.groups,
                status,
                ..User::new(self.entropy.token(16), now)
            };
            let clash = st.users.iter().any(|o| {
                (user.username.is_some() && o.username == user.username)
                    || user
                        .email
                        .as_ref()
                        .is_some_and(|e| o.has(&ContactKey::Email(e.clone())))
                    || user
                        .phone
                        .as_ref()
                        .is_some_and(|p| o.has(&ContactKey::Phone(p.clone())))
            });
            if clash {
                return Err(bad(
                    "duplicates the username, email or phone of an earlier user".into(),
                ));
            }
            st.users.push(user);
        }
        Ok(())
    }

    fn now(&self) -> u64 {
        self.clock.unix_secs()
    }

    /// Moves the emulator's clock forward (codes, tokens and tickets expire accordingly).
    pub fn advance_clock(&self, by: Duration) {
        self.clock.advance(by.min(Duration::from_secs(MAX_TTL)));
    }

    /// The emulator's current time, Unix seconds.
    pub fn now_secs(&self) -> u64 {
        self.now()
    }

    /// Current switches.
    pub fn settings(&self) -> Settings {
        *self.settings.lock()
    }

    /// Changes the switches given; others keep their value.
    pub fn update_settings(
        &self,
        captcha_required: Option<bool>,
        anonymous_enabled: Option<bool>,
        signup_enabled: Option<bool>,
    ) -> Settings {
        let mut s = self.settings.lock();
        if let Some(v) = captcha_required {
            s.captcha_required = v;
        }
        if let Some(v) = anonymous_enabled {
            s.anonymous_enabled = v;
        }
        if let Some(v) = signup_enabled {
            s.signup_enabled = v;
        }
        *s
    }

    // ----- test hooks -----

    /// The codes "sent", oldest first.
    pub fn outbox(&self) -> Value {
        json!(self.state.lock().outbox)
    }

    /// Requests received so far, oldest first.
    pub fn requests(&self) -> Value {
        json!(self.state.lock().requests)
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.state.lock().requests.clear();
    }

    /// Records a request (bounded; the oldest are dropped first).
    pub fn record(&self, r: Recorded) {
        let mut st = self.state.lock();
        if st.requests.len() >= MAX_RECORDED {
            st.requests.remove(0);
        }
        st.requests.push(r);
    }

    /// Image captchas issued and not yet used: `[{token, answer}]`.
    pub fn captchas(&self) -> Value {
        let st = self.state.lock();
        let mut list: Vec<_> = st
            .captcha_images
            .iter()
            .map(|(token, img)| json!({ "token": token, "answer": img.value.answer, "expires_at": img.exp }))
            .collect();
        list.sort_by_key(|v| v["expires_at"].as_u64());
        json!(list)
    }

    /// Users without their passwords, for tests.
    pub fn users(&self) -> Value {
        let st = self.state.lock();
        json!(st
            .users
            .iter()
            .map(|u| json!({
                "uid": u.uid, "username": u.username, "email": u.email, "phone_number": u.phone,
                "name": u.name, "groups": u.groups, "status": u.status, "anonymous": u.anonymous,
                "has_password": u.password.is_some(),
                "providers": u.links.iter().map(|l| json!({"id": l.provider_id, "provider_user_id": l.sub})).collect::<Vec<_>>(),
            }))
            .collect::<Vec<_>>())
    }

    /// Adds a fault; returns how many are pending.
    pub fn add_fault(&self, f: Fault) -> usize {
        let mut st = self.state.lock();
        st.faults.push(f);
        st.faults.len()
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// The fault that applies to a call on `path`, consuming one of its `times`.
    pub fn take_fault(&self, path: &str) -> Option<FaultAction> {
        let mut st = self.state.lock();
        let idx = st
            .faults
            .iter()
            .position(|f| f.path.as_deref().is_none_or(|p| p == path))?;
        let f = st.faults[idx].clone();
        let left = f.times.unwrap_or(1).saturating_sub(1);
        if left == 0 {
            st.faults.remove(idx);
        } else {
            st.faults[idx].times = Some(left);
        }
        let delay = Duration::from_millis(f.delay_ms.unwrap_or(0));
        let drop = f.drop.unwrap_or(false);
        let answer = if drop {
            None
        } else if let Some(raw) = f.raw_body {
            Some((f.status.unwrap_or(502), raw, false))
        } else if f.error.is_some() || delay.is_zero() {
            let error = f.error.unwrap_or_else(|| "unavailable".into());
            let body = json!({
                "error": error,
                "error_code": f.error_code.unwrap_or(14),
                "error_description": "injected fault",
            });
            Some((f.status.unwrap_or(503), body.to_string(), true))
        } else {
            None
        };
        Some(FaultAction {
            delay,
            drop,
            answer,
        })
    }

    /// The pending redirect captcha `id`, if it is still valid.
    pub fn captcha_session(&self, id: &str) -> Option<CaptchaSession> {
        let now = self.now();
        let st = self.state.lock();
        st.captcha_sessions
            .get(id)
            .filter(|s| s.exp > now)
            .map(|s| s.value.clone())
    }

    /// Ends captcha session `id`. On `pass`, returns a fresh captcha token valid 600 s.
    pub fn finish_captcha(&self, id: &str, pass: bool) -> Option<(CaptchaSession, Option<String>)> {
        let now = self.now();
        let mut st = self.state.lock();
        let s = st.captcha_sessions.remove(id).filter(|s| s.exp > now)?;
        let token = pass.then(|| {
            let t = format!("v1.{}", self.entropy.token(24));
            st.captcha_tokens.insert(t.clone(), now + CAPTCHA_TOKEN_TTL);
            t
        });
        Some((s.value, token))
    }

    /// The consent page's decision: a provider code for `login`, to send back to
    /// `redirect_uri`. Returns `None` for an unknown provider or a non-http(s) redirect.
    pub fn grant_provider_code(
        &self,
        provider_id: &str,
        redirect_uri: &str,
        login: &str,
    ) -> Option<String> {
        if !self.providers.iter().any(|p| p == provider_id) || !is_http_url(redirect_uri) {
            return None;
        }
        let login = if login.trim().is_empty() {
            "provider-user"
        } else {
            login.trim()
        };
        let code = self.entropy.token(18);
        let mut st = self.state.lock();
        st.provider_codes.insert(
            code.clone(),
            Expiring {
                value: ProviderCode {
                    provider_id: provider_id.into(),
                    redirect_uri: redirect_uri.into(),
                    login: login.chars().take(64).collect(),
                },
                exp: self.now() + PROVIDER_CODE_TTL,
            },
        );
        Some(code)
    }

    /// Whether `id` is a configured provider.
    pub fn has_provider(&self, id: &str) -> bool {
        self.providers.iter().any(|p| p == id)
    }

    // ----- endpoints -----

    /// Dispatches one `/auth/...` call.
    pub fn handle(&self, method: &str, path: &str, call: &Call) -> Result<Value, EmuError> {
        if self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .is_multiple_of(PRUNE_EVERY)
        {
            self.prune();
        }
        match (method, path) {
            ("POST", "/auth/v1/signin") => self.signin(call),
            ("POST", "/auth/v1/signin/anonymously") => self.signin_anonymously(call),
            ("POST", "/auth/v1/signup") => self.signup(call),
            ("POST", "/auth/v1/signin/custom") => self.signin_custom(call),
            ("POST", "/auth/v1/signin/with/provider") => self.signin_with_provider(call),
            ("POST", "/auth/v1/token") => self.token(call),
            ("POST", "/auth/v1/revoke") => self.revoke(call),
            ("POST", "/auth/v1/user/signout") => self.user_signout(call),
            ("DELETE", "/auth/v1/user/revoke/all") => self.revoke_all(call),
            ("GET", "/auth/v1/user/me") => self.user_me(call),
            ("POST", "/auth/v1/verification") => self.verification(call),
            ("POST", "/auth/v1/verification/verify") => self.verify(call),
            ("GET", "/auth/v1/provider/uri") => self.provider_uri(call),
            ("POST", "/auth/v1/provider/token") => self.provider_token(call),
            ("POST", "/auth/v1/user/sudo") => self.sudo(call),
            ("PATCH", "/auth/v1/user/contact") => self.contact(call),
            ("PATCH", "/auth/v1/user/password") => self.set_password(call),
            ("POST", "/auth/v1/reset") => self.reset(call),
            ("GET", "/auth/v1/user/provider") => self.list_providers(call),
            ("POST", "/auth/v1/user/provider/bind") => self.bind_provider(call),
            ("DELETE", p) if p.starts_with("/auth/v1/user/provider/") => {
                self.unbind_provider(call, &p["/auth/v1/user/provider/".len()..])
            }
            ("POST", "/auth/v1/captcha/init") => self.captcha_init(call),
            ("POST", "/auth/v1/captcha/data") => self.captcha_data(call),
            ("POST", "/auth/v1/captcha/data/verify") => self.captcha_verify(call),
            ("GET", "/auth/v1/checkIfUserExist") => self.check_if_user_exist(call),
            _ => Err(EmuError::not_found(format!("no endpoint {method} {path}"))),
        }
    }

    /// Forgets records that expired more than an hour ago (so a late caller still gets
    /// "expired" rather than "not found"), and caps the outbox, keeping a long-running emulator
    /// (`demo`) bounded.
    fn prune(&self) {
        let cutoff = self.now().saturating_sub(3600);
        let mut st = self.state.lock();
        st.verifications.retain(|_, v| v.exp > cutoff);
        st.verification_tokens.retain(|_, v| v.exp > cutoff);
        st.sudo_tokens.retain(|_, v| v.exp > cutoff);
        st.provider_codes.retain(|_, v| v.exp > cutoff);
        st.provider_tokens.retain(|_, v| v.exp > cutoff);
        st.captcha_images.retain(|_, v| v.exp > cutoff);
        st.captcha_sessions.retain(|_, v| v.exp > cutoff);
        st.captcha_tokens.retain(|_, exp| *exp > cutoff);
        st.access.retain(|_, t| t.exp > cutoff);
        st.refresh.retain(|_, t| t.exp > cutoff);
        let live: std::collections::HashSet<&String> = st
            .access
            .values()
            .chain(st.refresh.values())
            .map(|t| &t.sid)
            .collect();
        let dead: Vec<String> = st
            .sessions
            .keys()
            .filter(|sid| !live.contains(sid))
            .cloned()
            .collect();
        for sid in dead {
            st.sessions.remove(&sid);
        }
        let excess = st.outbox.len().saturating_sub(MAX_RECORDED);
        st.outbox.drain(..excess);
    }

    fn check_captcha(&self, st: &State, call: &Call) -> Result<(), EmuError> {
        if !self.settings.lock().captcha_required {
            return Ok(());
        }
        match &call.captcha_token {
            None => Err(EmuError::captcha_required("captcha required")),
            Some(t) => match st.captcha_tokens.get(t) {
                Some(exp) if *exp > self.now() => Ok(()),
                _ => Err(EmuError::captcha_invalid(
                    "captcha token invalid or expired",
                )),
            },
        }
    }

    /// Creates a session for `uid` and returns its credentials.
    fn issue(&self, st: &mut State, uid: &str, scope: &'static str) -> Value {
        let sid = self.entropy.token(12);
        st.sessions.insert(
            sid.clone(),
            Session {
                uid: uid.into(),
                scope,
            },
        );
        self.tokens_for(st, &sid)
    }

    /// New access and refresh tokens in session `sid`.
    fn tokens_for(&self, st: &mut State, sid: &str) -> Value {
        let now = self.now();
        let session = &st.sessions[sid];
        let user = st
            .users
            .iter()
            .find(|u| u.uid == session.uid)
            .cloned()
            .unwrap_or_else(|| User::new(session.uid.clone(), now));
        let scope = session.scope;
        let claims = json!({
            "iss": format!("https://{}.ap-shanghai.tcb-api.tencentcloudapi.com", self.env),
            "sub": user.uid,
            "aud": self.env,
            "exp": now + self.access_ttl,
            "iat": now,
            "at_hash": self.entropy.token(16),
            "nonce": self.entropy.token(16),
            "scope": scope,
            "name": user.name,
            "project_id": self.env,
            "meta": { "wxOpenId": "", "wxUnionId": "" },
            "user_type": "",
            "client_type": "client_user",
            "is_system_admin": false,
            "is_anonymous": user.anonymous,
            "groups": user.groups,
        });
        let access_token = self.signer.sign(&claims);
        let refresh_token = format!("m.{}", self.entropy.token(60));
        st.access.insert(
            access_token.clone(),
            TokenRec {
                sid: sid.into(),
                exp: now + self.access_ttl,
            },
        );
        st.refresh.insert(
            refresh_token.clone(),
            TokenRec {
                sid: sid.into(),
                exp: now + self.refresh_ttl,
            },
        );
        json!({
            "token_type": "Bearer",
            "access_token": access_token,
            "refresh_token": refresh_token,
            "expires_in": self.access_ttl,
            "scope": scope,
            "sub": user.uid,
            "groups": user.groups,
        })
    }

    fn end_session(st: &mut State, sid: &str) {
        st.sessions.remove(sid);
        st.access.retain(|_, t| t.sid != sid);
        st.refresh.retain(|_, t| t.sid != sid);
    }

    /// The user index and session id behind a bearer token, or `unauthenticated`.
    fn authenticate(&self, st: &State, call: &Call) -> Result<(usize, String), EmuError> {
        let token = call
            .bearer
            .as_deref()
            .ok_or_else(|| EmuError::unauthenticated("credentials not found"))?;
        let rec = st
            .access
            .get(token)
            .filter(|r| r.exp > self.now())
            .ok_or_else(|| EmuError::unauthenticated("access token invalid or expired"))?;
        let session = st
            .sessions
            .get(&rec.sid)
            .ok_or_else(|| EmuError::unauthenticated("session revoked"))?;
        let idx = st
            .users
            .iter()
            .position(|u| u.uid == session.uid)
            .ok_or_else(|| EmuError::unauthenticated("user no longer exists"))?;
        Ok((idx, rec.sid.clone()))
    }

    fn find_login(st: &State, login: &str) -> Option<usize> {
        let phone = normalize_phone(login);
        st.users.iter().position(|u| {
            !u.anonymous
                && (u.username.as_deref() == Some(login)
                    || u.email
                        .as_deref()
                        .is_some_and(|e| e.eq_ignore_ascii_case(login))
                    || (login.starts_with('+')
                        || login.chars().all(|c| c.is_ascii_digit() || c == ' '))
                        && u.phone.as_deref() == Some(phone.as_str()))
        })
    }

    fn owner_of(st: &State, contact: &ContactKey) -> Option<usize> {
        st.users.iter().position(|u| !u.anonymous && u.has(contact))
    }

    /// Reads exactly one of `email` / `phone_number` from the body.
    fn contact_of(call: &Call) -> Result<ContactKey, EmuError> {
        match (call.str("email"), call.str("phone_number")) {
            (Some(e), None) => {
                if !valid_email(e) {
                    return Err(EmuError::invalid_argument("email is not an e-mail address"));
                }
                Ok(ContactKey::Email(e.to_ascii_lowercase()))
            }
            (None, Some(p)) => {
                let p = normalize_phone(p);
                if !valid_phone(&p) {
                    return Err(EmuError::invalid_argument(
                        "phone_number is not a phone number (+86 13800000000)",
                    ));
                }
                Ok(ContactKey::Phone(p))
            }
            (Some(_), Some(_)) => Err(EmuError::invalid_argument(
                "give either email or phone_number, not both",
            )),
            (None, None) => Err(EmuError::invalid_argument(
                "email or phone_number is required",
            )),
        }
    }

    /// Spends a verification token issued for `contact`.
    fn spend_verification_token(
        &self,
        st: &mut State,
        token: &str,
        contact: Option<&ContactKey>,
    ) -> Result<ContactKey, EmuError> {
        let now = self.now();
        let rec = st
            .verification_tokens
            .get(token)
            .filter(|r| r.exp > now)
            .ok_or_else(|| {
                EmuError::invalid_argument("verification_token invalid, expired or used")
            })?;
        if let Some(c) = contact {
            if &rec.value != c {
                return Err(EmuError::invalid_argument(
                    "verification_token was issued for another contact",
                ));
            }
        }
        Ok(st
            .verification_tokens
            .remove(token)
            .expect("checked above")
            .value)
    }

    fn signin(&self, call: &Call) -> Result<Value, EmuError> {
        let now = self.now();
        let mut st = self.state.lock();
        self.check_captcha(&st, call)?;
        let login = call.require("username")?;
        if let Some(password) = call.body.get("password").and_then(Value::as_str) {
            let idx = Self::find_login(&st, login)
                .ok_or_else(|| EmuError::not_found("user not found"))?;
            let user = &mut st.users[idx];
            match user.status.as_str() {
                "BLOCKED" => return Err(EmuError::user_blocked("user is blocked")),
                "PENDING" => return Err(EmuError::user_pending("user is not activated yet")),
                _ => {}
            }
            if user.locked_until > now {
                let wait = user.locked_until - now;
                return Err(EmuError::invalid_status(format!(
                    "too many wrong passwords, try again in {wait} s"
                ))
                .retry_after(wait));
            }
            let Some(stored) = &user.password else {
                return Err(EmuError::password_not_set(
                    "password not set; sign in with a code or a provider",
                ));
            };
            if stored != password {
                user.failed_passwords += 1;
                if user.failed_passwords >= PASSWORD_ATTEMPTS {
                    user.failed_passwords = 0;
                    user.locked_until = now + PASSWORD_LOCK_SECS;
                }
                return Err(EmuError::invalid_password("wrong password"));
            }
            user.failed_passwords = 0;
            let uid = user.uid.clone();
            return Ok(self.issue(&mut st, &uid, "user"));
        }
        let token = call.str("verification_token").ok_or_else(|| {
            EmuError::invalid_argument("password or verification_token is required")
        })?;
        let idx =
            Self::find_login(&st, login).ok_or_else(|| EmuError::not_found("user not found"))?;
        let user = &st.users[idx];
        match user.status.as_str() {
            "BLOCKED" => return Err(EmuError::user_blocked("user is blocked")),
            "PENDING" => return Err(EmuError::user_pending("user is not activated yet")),
            _ => {}
        }
        let contact = {
            let rec = st
                .verification_tokens
                .get(token)
                .filter(|r| r.exp > now)
                .ok_or_else(|| {
                    EmuError::invalid_argument("verification_token invalid, expired or used")
                })?;
            rec.value.clone()
        };
        if !st.users[idx].has(&contact) {
            return Err(EmuError::invalid_argument(
                "verification_token was issued for another contact",
            ));
        }
        self.spend_verification_token(&mut st, token, Some(&contact))?;
        let uid = st.users[idx].uid.clone();
        Ok(self.issue(&mut st, &uid, "user"))
    }

    fn signin_anonymously(&self, call: &Call) -> Result<Value, EmuError> {
        let device = call
            .device_id
            .as_deref()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| EmuError::invalid_argument("x-device-id header is required"))?;
        if !self.settings.lock().anonymous_enabled {
            return Err(EmuError::unimplemented("anonymous sign-in is not enabled"));
        }
        let now = self.now();
        let mut st = self.state.lock();
        let existing = st
            .anon_by_device
            .get(device)
            .filter(|uid| st.users.iter().any(|u| &&u.uid == uid && u.anonymous))
            .cloned();
        let uid = match existing {
            Some(uid) => uid,
            None => {
                let uid = self.entropy.token(16);
                st.users.push(User {
                    // The SDK marks a user anonymous when its name is "anonymous".
                    name: "anonymous".into(),
                    anonymous: true,
                    ..User::new(uid.clone(), now)
                });
                st.anon_by_device.insert(device.into(), uid.clone());
                uid
            }
        };
        Ok(self.issue(&mut st, &uid, "anonymous"))
    }

    fn signup(&self, call: &Call) -> Result<Value, EmuError> {
        if !self.settings.lock().signup_enabled {
            return Err(EmuError::failed_precondition(
                "sign-up is not enabled for this environment",
            ));
        }
        let now = self.now();
        let mut st = self.state.lock();

        let mut contact = None;
        let mut identity = None;
        if let Some(pt) = call.str("provider_token") {
            let rec = st
                .provider_tokens
                .get(pt)
                .filter(|r| r.exp > now)
                .ok_or_else(|| EmuError::invalid_argument("provider_token invalid or expired"))?;
            identity = Some(rec.value.clone());
        } else {
            let c = Self::contact_of(call)?;
            let token = call.require("verification_token")?;
            match st.verification_tokens.get(token) {
                Some(r) if r.exp > now && r.value == c => {}
                Some(r) if r.exp > now => {
                    return Err(EmuError::invalid_argument(
                        "verification_token was issued for another contact",
                    ))
                }
                _ => {
                    return Err(EmuError::invalid_argument(
                        "verification_token invalid, expired or used",
                    ))
                }
            }
            if Self::owner_of(&st, &c).is_some() {
                return Err(EmuError::failed_precondition(match c {
                    ContactKey::Email(_) => "email already registered",
                    ContactKey::Phone(_) => "phone number already registered",
                }));
            }
            contact = Some(c);
        }
        if let Some(id) = &identity {
            if st.users.iter().any(|u| {
                u.links
                    .iter()
                    .any(|l| l.provider_id == id.provider_id && l.sub == id.sub)
            }) {
                return Err(EmuError::failed_precondition(
                    "this identity is already registered",
                ));
            }
        }
        let username = call.str("username").map(str::to_string);
        if let Some(n) = &username {
            if !valid_username(n) {
                return Err(EmuError::invalid_argument("username must be 2-48 letters, digits or -_.:+@, starting with a letter or digit"));
            }
            if st
                .users
                .iter()
                .any(|u| u.username.as_deref() == Some(n.as_str()))
            {
                return Err(EmuError::failed_precondition("username already exists"));
            }
        }
        let password = call.raw("password").map(str::to_string);
        if let Some(pw) = &password {
            valid_password(pw)?;
        }

        // Upgrade of an anonymous user keeps its uid.
        let upgrade = match call.str("anonymous_token") {
            Some(at) => {
                let probe = Call {
                    bearer: Some(at.to_string()),
                    ..Call::default()
                };
                let (idx, sid) = self.authenticate(&st, &probe).map_err(|_| {
                    EmuError::invalid_argument("anonymous_token invalid or expired")
                })?;
                if !st.users[idx].anonymous {
                    return Err(EmuError::invalid_argument(
                        "anonymous_token does not belong to an anonymous user",
                    ));
                }
                Some((idx, sid))
            }
            None => None,
        };

        if let (Some(c), Some(token)) = (&contact, call.str("verification_token")) {
            self.spend_verification_token(&mut st, token, Some(c))?;
        }
        if let Some(pt) = call.str("provider_token") {
            st.provider_tokens.remove(pt);
        }

        let name = call
            .str("name")
            .map(str::to_string)
            .or_else(|| identity.as_ref().map(|i| i.name.clone()))
            .or_else(|| username.clone())
            .or_else(|| contact.as_ref().map(|c| c.to().to_string()))
            .unwrap_or_default();
        let (email, phone) = match &contact {
            Some(ContactKey::Email(e)) => (Some(e.clone()), None),
            Some(ContactKey::Phone(p)) => (None, Some(p.clone())),
            None => (None, None),
        };
        let links: Vec<Link> = identity
            .iter()
            .map(|i| Link {
                provider_id: i.provider_id.clone(),
                sub: i.sub.clone(),
                name: i.name.clone(),
            })
            .collect();

        let uid = match upgrade {
            Some((idx, sid)) => {
                let u = &mut st.users[idx];
                u.anonymous = false;
                u.username = username;
                u.email = email;
                u.phone = phone;
                u.password = password;
                u.name = name;
                u.links.extend(links);
                u.updated_at = now;
                let uid = u.uid.clone();
                st.anon_by_device.retain(|_, v| v != &uid);
                // The anonymous session ends; the caller continues with the new credentials.
                Self::end_session(&mut st, &sid);
                uid
            }
            None => {
                let uid = self.entropy.token(16);
                st.users.push(User {
                    username,
                    email,
                    phone,
                    password,
                    name,
                    links,
                    ..User::new(uid.clone(), now)
                });
                uid
            }
        };
        Ok(self.issue(&mut st, &uid, "user"))
    }

    fn signin_custom(&self, call: &Call) -> Result<Value, EmuError> {
        if call.str("provider_id") != Some("custom") {
            return Err(EmuError::invalid_argument("provider_id must be custom"));
        }
        let ticket = call.require("ticket")?;
        let (key_id, jwt) = ticket
            .split_once("/@@/")
            .ok_or_else(|| EmuError::invalid_argument("ticket is not <private_key_id>/@@/<jwt>"))?;
        let key = self.ticket_keys.get(key_id).ok_or_else(|| {
            EmuError::invalid_argument("ticket signed with an unknown private_key_id")
        })?;
        let claims = verify_rs256(jwt, key)
            .ok_or_else(|| EmuError::invalid_argument("ticket signature invalid"))?;
        if claims.get("env").and_then(Value::as_str) != Some(self.env.as_str()) {
            return Err(EmuError::invalid_argument(
                "ticket was issued for another environment",
            ));
        }
        let now_ms = self.clock.unix_millis();
        match claims.get("exp").and_then(Value::as_u64) {
            Some(exp) if exp > now_ms => {}
            _ => return Err(EmuError::invalid_argument("ticket expired")),
        }
        let uid_claim = claims
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let uid_ok = (4..=32).contains(&uid_claim.len())
            && uid_claim
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-#@~=*(){}[]:.,<>+".contains(c));
        if !uid_ok {
            return Err(EmuError::invalid_argument("ticket uid is invalid"));
        }
        let exp_ms = claims.get("exp").and_then(Value::as_u64).unwrap_or(now_ms);
        let now = self.now();
        let mut st = self.state.lock();
        // Single use, as a bearer credential should be: a ticket caught in transit or in a log
        // cannot sign in again. Spent tickets are forgotten once they would have expired.
        let digest: [u8; 32] = sha2::Sha256::digest(jwt.as_bytes()).into();
        st.used_tickets.retain(|_, exp| *exp > now_ms);
        if st.used_tickets.contains_key(&digest) {
            return Err(EmuError::invalid_argument("ticket already used"));
        }
        st.used_tickets.insert(digest, exp_ms);
        let uid = match st
            .users
            .iter()
            .find(|u| u.custom_uid.as_deref() == Some(uid_claim))
        {
            Some(u) => u.uid.clone(),
            None => {
                let uid = self.entropy.token(16);
                st.users.push(User {
                    name: uid_claim.into(),
                    custom_uid: Some(uid_claim.into()),
                    ..User::new(uid.clone(), now)
                });
                uid
            }
        };
        if st
            .users
            .iter()
            .any(|u| u.uid == uid && u.status == "BLOCKED")
        {
            return Err(EmuError::user_blocked("user is blocked"));
        }
        Ok(self.issue(&mut st, &uid, "user"))
    }

    fn signin_with_provider(&self, call: &Call) -> Result<Value, EmuError> {
        let token = call.require("provider_token")?;
        let now = self.now();
        let mut st = self.state.lock();
        let identity = st
            .provider_tokens
            .get(token)
            .filter(|r| r.exp > now)
            .map(|r| r.value.clone())
            .ok_or_else(|| EmuError::invalid_argument("provider_token invalid or expired"))?;
        let existing = st
            .users
            .iter()
            .find(|u| {
                u.links
                    .iter()
                    .any(|l| l.provider_id == identity.provider_id && l.sub == identity.sub)
            })
            .map(|u| (u.uid.clone(), u.status.clone()));
        let uid = match existing {
            Some((_, status)) if status == "BLOCKED" => {
                return Err(EmuError::user_blocked("user is blocked"))
            }
            Some((uid, _)) => uid,
            None => {
                if call.flag("force_disable_sign_up") {
                    return Err(EmuError::not_found("no user is linked to this identity"));
                }
                if !self.settings.lock().signup_enabled {
                    return Err(EmuError::failed_precondition(
                        "sign-up is not enabled for this environment",
                    ));
                }
                let uid = self.entropy.token(16);
                st.users.push(User {
                    name: identity.name.clone(),
                    links: vec![Link {
                        provider_id: identity.provider_id.clone(),
                        sub: identity.sub.clone(),
                        name: identity.name.clone(),
                    }],
                    ..User::new(uid.clone(), now)
                });
                uid
            }
        };
        st.provider_tokens.remove(token);
        Ok(self.issue(&mut st, &uid, "user"))
    }

    fn token(&self, call: &Call) -> Result<Value, EmuError> {
        match call.str("grant_type") {
            Some("refresh_token") => {}
            Some(other) => {
                return Err(EmuError::invalid_argument(format!(
                    "unsupported grant_type {other}"
                )))
            }
            None => return Err(EmuError::invalid_argument("grant_type is required")),
        }
        let rt = call.require("refresh_token")?;
        let now = self.now();
        let mut st = self.state.lock();
        let rec = st.refresh.remove(rt).ok_or_else(|| {
            EmuError::invalid_grant("refresh token invalid, expired or already used")
        })?;
        if rec.exp <= now || !st.sessions.contains_key(&rec.sid) {
            return Err(EmuError::invalid_grant(
                "refresh token invalid, expired or already used",
            ));
        }
        let uid = st.sessions[&rec.sid].uid.clone();
        if !st
            .users
            .iter()
            .any(|u| u.uid == uid && u.status != "BLOCKED")
        {
            Self::end_session(&mut st, &rec.sid);
            return Err(EmuError::invalid_grant("user no longer active"));
        }
        Ok(self.tokens_for(&mut st, &rec.sid))
    }

    fn revoke(&self, call: &Call) -> Result<Value, EmuError> {
        let token = call.require("token")?;
        let mut st = self.state.lock();
        // RFC 7009: revoking an unknown token succeeds too.
        let sid = st
            .access
            .get(token)
            .or_else(|| st.refresh.get(token))
            .map(|r| r.sid.clone());
        if let Some(sid) = sid {
            Self::end_session(&mut st, &sid);
        }
        Ok(json!({}))
    }

    /// `DELETE user/revoke/all`: ends every session of the bearer's user, on every device.
    fn revoke_all(&self, call: &Call) -> Result<Value, EmuError> {
        let mut st = self.state.lock();
        let (i, _) = self.authenticate(&st, call)?;
        let uid = st.users[i].uid.clone();
        let sids: Vec<String> = st
            .sessions
            .iter()
            .filter(|(_, s)| s.uid == uid)
            .map(|(sid, _)| sid.clone())
            .collect();
        for sid in sids {
            Self::end_session(&mut st, &sid);
        }
        Ok(json!({}))
    }

    fn user_signout(&self, call: &Call) -> Result<Value, EmuError> {
        let mut st = self.state.lock();
        let (_, sid) = self.authenticate(&st, call)?;
        Self::end_session(&mut st, &sid);
        Ok(match call.str("redirect_uri") {
            Some(r) => json!({ "redirect_uri": r }),
            None => json!({}),
        })
    }

    fn profile(&self, u: &User) -> Value {
        json!({
            "sub": u.uid,
            "user_id": u.uid,
            "name": u.name,
            "picture": u.picture,
            "username": u.username.clone().unwrap_or_default(),
            "email": u.email.clone().unwrap_or_default(),
            "email_verified": u.email.is_some(),
            "phone_number": u.phone.clone().unwrap_or_default(),
            "gender": "UNKNOWN",
            "groups": u.groups.iter().map(|g| json!({ "id": g })).collect::<Vec<_>>(),
            "providers": u.links.iter().map(|l| json!({ "id": l.provider_id, "provider_user_id": l.sub, "name": l.name })).collect::<Vec<_>>(),
            "status": u.status,
            "has_password": u.password.is_some(),
            "password": if u.password.is_some() { "SET" } else { "" },
            "created_at": rfc3339(u.created_at),
            "updated_at": rfc3339(u.updated_at),
            "internal_user_type": "generalUser",
            "type": if u.anonymous { "anonymous" } else { "external" },
            "meta": {},
        })
    }

    fn user_me(&self, call: &Call) -> Result<Value, EmuError> {
        let st = self.state.lock();
        let (idx, _) = self.authenticate(&st, call)?;
        Ok(self.profile(&st.users[idx]))
    }

    fn verification(&self, call: &Call) -> Result<Value, EmuError> {
        let now = self.now();
        let mut st = self.state.lock();
        self.check_captcha(&st, call)?;
        let target = call.str("target").unwrap_or("ANY").to_ascii_uppercase();
        let current = match &call.bearer {
            Some(_) => Some(self.authenticate(&st, call)?.0),
            None => None,
        };
        let contact = if target == "CUR_USER" {
            let idx = current
                .ok_or_else(|| EmuError::unauthenticated("CUR_USER needs a signed-in user"))?;
            let u = &st.users[idx];
            match Self::contact_of(call) {
                Ok(c) if u.has(&c) => c,
                Ok(_) => {
                    return Err(EmuError::invalid_argument(
                        "CUR_USER codes go to the user's own contact",
                    ))
                }
                Err(_) => match (&u.email, &u.phone) {
                    (Some(e), _) => ContactKey::Email(e.clone()),
                    (None, Some(p)) => ContactKey::Phone(p.clone()),
                    _ => {
                        return Err(EmuError::failed_precondition(
                            "the user has no e-mail or phone",
                        ))
                    }
                },
            }
        } else {
            Self::contact_of(call)?
        };
        let is_user = Self::owner_of(&st, &contact).is_some();
        match target.as_str() {
            "ANY" | "CUR_USER" => {}
            "USER" if !is_user => return Err(EmuError::not_found("user not found")),
            "USER" => {}
            "NOT_USER" if is_user => {
                return Err(EmuError::failed_precondition("already registered"))
            }
            "NOT_USER" => {}
            other => {
                return Err(EmuError::invalid_argument(format!(
                    "unknown target {other}"
                )))
            }
        }
        let code = format!("{:06}", self.entropy.below(1_000_000));
        let id = self.entropy.token(18);
        st.outbox.push(OutboxEntry {
            to: contact.to().to_string(),
            code: code.clone(),
            verification_id: id.clone(),
            sent_at: rfc3339(now),
        });
        st.verifications.insert(
            id.clone(),
            Verification {
                contact,
                code,
                exp: now + CODE_TTL,
                attempts: 0,
                used: false,
            },
        );
        Ok(json!({ "verification_id": id, "expires_in": CODE_TTL, "is_user": is_user }))
    }

    fn verify(&self, call: &Call) -> Result<Value, EmuError> {
        let id = call.require("verification_id")?;
        // The SDK sends the code as a string; accept a number too.
        let code = match call.body.get("verification_code") {
            Some(Value::String(s)) => s.trim().to_string(),
            Some(Value::Number(n)) => format!("{:06}", n.as_u64().unwrap_or(u64::MAX)),
            _ => return Err(EmuError::invalid_argument("verification_code is required")),
        };
        let now = self.now();
        let mut st = self.state.lock();
        let v = st
            .verifications
            .get_mut(id)
            .ok_or_else(|| EmuError::not_found("verification not found"))?;
        if v.attempts >= CODE_ATTEMPTS {
            return Err(EmuError::aborted("too many attempts; request a new code"));
        }
        if v.used {
            return Err(EmuError::invalid_argument("verification code already used"));
        }
        if v.exp <= now {
            return Err(EmuError::invalid_argument("verification code expired"));
        }
        if v.code != code {
            v.attempts += 1;
            if v.attempts >= CODE_ATTEMPTS {
                return Err(EmuError::aborted("too many attempts; request a new code"));
            }
            return Err(EmuError::invalid_argument("verification code is wrong"));
        }
        v.used = true;
        let contact = v.contact.clone();
        let token = self.entropy.token(32);
        st.verification_tokens.insert(
            token.clone(),
            Expiring {
                value: contact,
                exp: now + CODE_TTL,
            },
        );
        Ok(json!({ "verification_token": token, "expires_in": CODE_TTL }))
    }

    fn provider_uri(&self, call: &Call) -> Result<Value, EmuError> {
        let q = |k: &str| {
            call.query
                .get(k)
                .map(String::as_str)
                .filter(|s| !s.is_empty())
        };
        let provider = q("provider_id")
            .ok_or_else(|| EmuError::invalid_argument("provider_id is required"))?;
        if !self.has_provider(provider) {
            return Err(EmuError::not_found(format!(
                "provider {provider} is not configured"
            )));
        }
        let redirect = q("redirect_uri")
            .ok_or_else(|| EmuError::invalid_argument("redirect_uri is required"))?;
        if !is_http_url(redirect) {
            return Err(EmuError::invalid_argument(
                "redirect_uri must be an http(s) URL",
            ));
        }
        let mut uri = url::Url::parse(&format!("{}/__emulator/oauth/authorize", call.origin))
            .map_err(|_| EmuError::internal("cannot build the consent URL"))?;
        uri.query_pairs_mut()
            .append_pair("provider_id", provider)
            .append_pair("redirect_uri", redirect)
            .append_pair("state", q("state").unwrap_or(""))
            .append_pair("client_id", q("client_id").unwrap_or(&self.env));
        Ok(json!({ "uri": uri.as_str() }))
    }

    fn provider_token(&self, call: &Call) -> Result<Value, EmuError> {
        let provider = call.require("provider_id")?;
        let redirect = call.require("provider_redirect_uri")?;
        let code = call.require("provider_code")?;
        let now = self.now();
        let mut st = self.state.lock();
        let rec = st
            .provider_codes
            .remove(code)
            .filter(|r| r.exp > now)
            .ok_or_else(|| EmuError::invalid_argument("provider_code invalid, expired or used"))?;
        if rec.value.provider_id != provider {
            return Err(EmuError::invalid_argument(
                "provider_code was issued for another provider",
            ));
        }
        if rec.value.redirect_uri != redirect {
            return Err(EmuError::invalid_argument(
                "provider_redirect_uri does not match the authorization request",
            ));
        }
        let identity = ProviderIdentity {
            provider_id: provider.into(),
            sub: format!("{}-{}", provider, rec.value.login),
            name: rec.value.login.clone(),
        };
        let token = self.entropy.token(32);
        let profile = json!({
            "provider_id": identity.provider_id,
            "sub": identity.sub,
            "name": identity.name,
            "picture": "",
            "email": "",
            "phone_number": "",
            "provider": identity.provider_id,
        });
        st.provider_tokens.insert(
            token.clone(),
            Expiring {
                value: identity,
                exp: now + PROVIDER_TOKEN_TTL,
            },
        );
        Ok(
            json!({ "provider_token": token, "expires_in": PROVIDER_TOKEN_TTL, "provider_profile": profile }),
        )
    }

    fn sudo(&self, call: &Call) -> Result<Value, EmuError> {
        let now = self.now();
        let mut st = self.state.lock();
        let (idx, _) = self.authenticate(&st, call)?;
        if let Some(pw) = call.body.get("password").and_then(Value::as_str) {
            match &st.users[idx].password {
                // Spec §5.11: a user without a password gets an empty sudo token.
                None => return Ok(json!({ "sudo_token": "", "expires_in": SUDO_TTL })),
                Some(stored) if stored != pw => {
                    return Err(EmuError::invalid_password("wrong password"))
                }
                Some(_) => {}
            }
        } else if let Some(vt) = call.str("verification_token") {
            let contact = st
                .verification_tokens
                .get(vt)
                .filter(|r| r.exp > now)
                .map(|r| r.value.clone())
                .ok_or_else(|| {
                    EmuError::invalid_argument("verification_token invalid, expired or used")
                })?;
            if !st.users[idx].has(&contact) {
                return Err(EmuError::invalid_argument(
                    "verification_token was issued for another contact",
                ));
            }
            st.verification_tokens.remove(vt);
        } else {
            return Err(EmuError::invalid_argument(
                "password or verification_token is required",
            ));
        }
        let token = self.entropy.token(32);
        let uid = st.users[idx].uid.clone();
        st.sudo_tokens.insert(
            token.clone(),
            Expiring {
                value: uid,
                exp: now + SUDO_TTL,
            },
        );
        Ok(json!({ "sudo_token": token, "expires_in": SUDO_TTL }))
    }

    fn check_sudo(&self, st: &State, call: &Call, idx: usize) -> Result<(), EmuError> {
        let token = call.require("sudo_token")?;
        match st.sudo_tokens.get(token) {
            Some(r) if r.exp > self.now() && r.value == st.users[idx].uid => Ok(()),
            _ => Err(EmuError::permission_denied("sudo_token invalid or expired")),
        }
    }

    fn contact(&self, call: &Call) -> Result<Value, EmuError> {
        let now = self.now();
        let mut st = self.state.lock();
        let (idx, _) = self.authenticate(&st, call)?;
        self.check_sudo(&st, call, idx)?;
        let contact = Self::contact_of(call)?;
        let vt = call.require("verification_token")?;
        match st.verification_tokens.get(vt) {
            Some(r) if r.exp > now && r.value == contact => {}
            _ => {
                return Err(EmuError::invalid_argument(
                    "verification_token invalid, expired, used or for another contact",
                ))
            }
        }
        let uid = st.users[idx].uid.clone();
        if let Some(other) = Self::owner_of(&st, &contact).filter(|o| st.users[*o].uid != uid) {
            match call.str("conflict_resolution").unwrap_or("DEFAULT") {
                "DEFAULT" => {
                    return Err(EmuError::failed_precondition(
                        "this contact is bound to another account",
                    ))
                }
                "TRANSFER" => {
                    let o = &mut st.users[other];
                    match contact {
                        ContactKey::Email(_) => o.email = None,
                        ContactKey::Phone(_) => o.phone = None,
                    }
                }
                "DELETE_ACCOUNT_TRANSFER" => {
                    let gone = st.users.remove(other).uid;
                    let sids: Vec<String> = st
                        .sessions
                        .iter()
                        .filter(|(_, s)| s.uid == gone)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for sid in sids {
                        Self::end_session(&mut st, &sid);
                    }
                }
                other => {
                    return Err(EmuError::invalid_argument(format!(
                        "unknown conflict_resolution {other}"
                    )))
                }
            }
        }
        st.verification_tokens.remove(vt);
        let u = st
            .users
            .iter_mut()
            .find(|u| u.uid == uid)
            .expect("authenticated user exists");
        match contact {
            ContactKey::Email(e) => u.email = Some(e),
            ContactKey::Phone(p) => u.phone = Some(p),
        }
        u.updated_at = now;
        Ok(json!({}))
    }

    fn set_password(&self, call: &Call) -> Result<Value, EmuError> {
        let mut st = self.state.lock();
        let (idx, _) = self.authenticate(&st, call)?;
        self.check_sudo(&st, call, idx)?;
        let pw = call.require_raw("new_password")?;
        valid_password(pw)?;
        let now = self.now();
        let u = &mut st.users[idx];
        u.password = Some(pw.into());
        u.updated_at = now;
        Ok(json!({}))
    }

    fn reset(&self, call: &Call) -> Result<Value, EmuError> {
        let contact = Self::contact_of(call)?;
        let pw = call.require_raw("new_password")?;
        valid_password(pw)?;
        let vt = call.require("verification_token")?;
        let now = self.now();
        let mut st = self.state.lock();
        let idx =
            Self::owner_of(&st, &contact).ok_or_else(|| EmuError::not_found("user not found"))?;
        self.spend_verification_token(&mut st, vt, Some(&contact))?;
        let u = &mut st.users[idx];
        u.password = Some(pw.into());
        u.failed_passwords = 0;
        u.locked_until = 0;
        u.updated_at = now;
        Ok(json!({}))
    }

    fn list_providers(&self, call: &Call) -> Result<Value, EmuError> {
        let st = self.state.lock();
        let (idx, _) = self.authenticate(&st, call)?;
        let u = &st.users[idx];
        let data: Vec<Value> = self
            .providers
            .iter()
            .map(|p| {
                let link = u.links.iter().find(|l| &l.provider_id == p);
                json!({
                    "id": p,
                    "name": p,
                    "provider_user_name": link.map(|l| l.name.clone()).unwrap_or_default(),
                    "provider_type": "oauth",
                    "bind": link.is_some(),
                })
            })
            .collect();
        Ok(json!({ "total": data.len(), "data": data }))
    }

    fn bind_provider(&self, call: &Call) -> Result<Value, EmuError> {
        let token = call.require("provider_token")?;
        let now = self.now();
        let mut st = self.state.lock();
        let (idx, _) = self.authenticate(&st, call)?;
        let identity = st
            .provider_tokens
            .get(token)
            .filter(|r| r.exp > now)
            .map(|r| r.value.clone())
            .ok_or_else(|| EmuError::invalid_argument("provider_token invalid or expired"))?;
        let uid = st.users[idx].uid.clone();
        let owner = st
            .users
            .iter()
            .find(|u| {
                u.links
                    .iter()
                    .any(|l| l.provider_id == identity.provider_id && l.sub == identity.sub)
            })
            .map(|u| u.uid.clone());
        match owner {
            Some(o) if o != uid => {
                return Err(EmuError::failed_precondition(
                    "this identity is linked to another account",
                ))
            }
            Some(_) => {}
            None => {
                let u = &mut st.users[idx];
                if u.links
                    .iter()
                    .any(|l| l.provider_id == identity.provider_id)
                {
                    return Err(EmuError::failed_precondition(
                        "the account already has an identity of this provider",
                    ));
                }
                u.links.push(Link {
                    provider_id: identity.provider_id.clone(),
                    sub: identity.sub.clone(),
                    name: identity.name.clone(),
                });
                u.updated_at = now;
            }
        }
        st.provider_tokens.remove(token);
        Ok(json!({}))
    }

    fn unbind_provider(&self, call: &Call, provider: &str) -> Result<Value, EmuError> {
        let provider = percent_encoding::percent_decode_str(provider)
            .decode_utf8_lossy()
            .to_string();
        let mut st = self.state.lock();
        let (idx, _) = self.authenticate(&st, call)?;
        let u = &mut st.users[idx];
        let before = u.links.len();
        u.links.retain(|l| l.provider_id != provider);
        if u.links.len() == before {
            return Err(EmuError::not_found(format!(
                "provider {provider} is not linked"
            )));
        }
        Ok(json!({}))
    }

    fn captcha_init(&self, call: &Call) -> Result<Value, EmuError> {
        let redirect = call.require("redirect_uri")?;
        if !is_http_url(redirect) {
            return Err(EmuError::invalid_argument(
                "redirect_uri must be an http(s) URL",
            ));
        }
        let state = call.str("state").unwrap_or("").to_string();
        let now = self.now();
        let mut st = self.state.lock();
        if !self.settings.lock().captcha_required {
            let t = format!("v1.{}", self.entropy.token(24));
            st.captcha_tokens.insert(t.clone(), now + CAPTCHA_TOKEN_TTL);
            return Ok(json!({ "captcha_token": t, "expires_in": CAPTCHA_TOKEN_TTL }));
        }
        let id = self.entropy.token(18);
        st.captcha_sessions.insert(
            id.clone(),
            Expiring {
                value: CaptchaSession {
                    redirect_uri: redirect.into(),
                    state,
                },
                exp: now + CAPTCHA_TOKEN_TTL,
            },
        );
        Ok(
            json!({ "url": format!("{}/__emulator/captcha?id={id}", call.origin), "expires_in": CAPTCHA_TOKEN_TTL }),
        )
    }

    fn captcha_data(&self, _call: &Call) -> Result<Value, EmuError> {
        let answer: String = (0..4)
            .map(|_| char::from(b'0' + self.entropy.below(10) as u8))
            .collect();
        let token = self.entropy.token(18);
        let image = super::pages::captcha_svg(&answer, &*self.entropy);
        let now = self.now();
        self.state.lock().captcha_images.insert(
            token.clone(),
            Expiring {
                value: CaptchaImage { answer },
                exp: now + CAPTCHA_IMAGE_TTL,
            },
        );
        Ok(
            json!({ "data": image, "type": "image", "token": token, "expires_in": CAPTCHA_IMAGE_TTL }),
        )
    }

    fn captcha_verify(&self, call: &Call) -> Result<Value, EmuError> {
        let token = call.require("token")?;
        let key = call.str("key").unwrap_or("");
        let now = self.now();
        let mut st = self.state.lock();
        // An image can be tried once: a wrong answer needs a new image.
        let img = st
            .captcha_images
            .remove(token)
            .filter(|i| i.exp > now)
            .ok_or_else(|| EmuError::invalid_argument("captcha expired; get a new one"))?;
        if !img.value.answer.eq_ignore_ascii_case(key) {
            return Err(EmuError::invalid_argument("captcha answer is wrong"));
        }
        let t = format!("v1.{}", self.entropy.token(24));
        st.captcha_tokens.insert(t.clone(), now + CAPTCHA_TOKEN_TTL);
        Ok(json!({ "captcha_token": t, "expires_in": CAPTCHA_TOKEN_TTL }))
    }

    fn check_if_user_exist(&self, call: &Call) -> Result<Value, EmuError> {
        let name = call
            .query
            .get("username")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| EmuError::invalid_argument("username is required"))?;
        let st = self.state.lock();
        Ok(
            json!({ "exist": st.users.iter().any(|u| u.username.as_deref() == Some(name.as_str())) }),
        )
    }
}

fn is_http_url(s: &str) -> bool {
    url::Url::parse(s)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

fn uuid_like(e: &dyn crate::entropy::Entropy) -> String {
    let h = e.hex_id();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_normalise_to_the_sdk_form() {
        assert_eq!(normalize_phone("+8613800000000"), "+86 13800000000");
        assert_eq!(normalize_phone("138 0000 0000"), "+86 13800000000");
        assert_eq!(normalize_phone("+86 13800000000"), "+86 13800000000");
        assert!(valid_phone("+86 13800000000"));
        assert!(!valid_phone("+86 abc"));
    }

    #[test]
    fn username_rule() {
        assert!(valid_username("alice"));
        assert!(valid_username("a.b-c_d:e+f@g"));
        assert!(!valid_username("a"));
        assert!(!valid_username("_alice"));
        assert!(!valid_username("名字"));
    }
}
