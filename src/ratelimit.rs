//! In-process rate limits for the sign-in flows: code sending per target (phone or e-mail) and
//! per client IP, password attempts per account and per client IP, and per client IP the
//! other calls a visitor can make CloudBase answer without being signed in (guest sign-ins,
//! provider redirects, tickets, captchas). A sliding log per key
//! (the limits are small, so the log is short) gives an exact `Retry-After`. Time comes from
//! the injected clock. Over the limit, the caller answers 429 and never calls CloudBase.
//! With a shared store, the counts live in Redis (one script per event), so replicas share
//! them; a store failure refuses the attempt with 503 rather than let it through unlimited.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::Script;

use crate::store::redis::Redis;
use crate::store::StoreError;

use crate::clock::SharedClock;
use crate::config::{Rate, RateLimitSettings};

/// Keys kept per limiter. When full, expired keys are swept (at most once a second, so a flood
/// cannot make every call scan the map); if it is still full, new keys are refused rather
/// than let through unlimited or allowed to evict live counts. Filling it takes tens of
/// thousands of client networks, since every key is itself limited per IP.
const MAX_KEYS: usize = 200_000;

/// One limit: at most `count` events per `per`, per key.
pub struct Limiter {
    rate: Option<Rate>,
    clock: SharedClock,
    backend: Backend,
}

enum Backend {
    Memory(Mutex<Log>),
    /// A sorted set per key (`P<name>:<keyed hash of the key>`) of the events' times, kept by
    /// one script, so replicas share one count.
    Redis {
        redis: Arc<Redis>,
        name: &'static str,
        hit: Arc<Script>,
    },
}

/// Drops events older than the window, then adds one unless `count` are left; answers -1
/// when it was added, else the milliseconds until the oldest leaves the window.
const HIT: &str = r"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tonumber(oldest[2]) + window - now
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window + 60000)
return -1
";

#[derive(Default)]
struct Log {
    keys: HashMap<String, VecDeque<u64>>,
    last_sweep_ms: u64,
}

/// A unit taken from a limiter; [`Limiter::refund`] gives it back when the attempt should
/// not count (a successful sign-in, a code CloudBase did not send).
#[derive(Debug, Clone)]
pub struct Permit {
    key: String,
    at_ms: u64,
    /// The event's member in a shared store's set.
    member: String,
}

/// Why a unit could not be taken.
#[derive(Debug)]
pub enum Denied {
    /// Over the limit: the seconds until a unit is free again.
    Wait(u64),
    /// The shared store failed (the caller answers 503 and calls nothing).
    Store(StoreError),
}

impl Limiter {
    /// A limiter in memory for `rate` (`None`: unlimited).
    pub fn new(rate: Option<Rate>, clock: SharedClock) -> Limiter {
        Limiter {
            rate,
            clock,
            backend: Backend::Memory(Mutex::new(Log::default())),
        }
    }

    /// A limiter for `rate` counting in Redis, under `name`.
    pub fn redis(
        rate: Option<Rate>,
        clock: SharedClock,
        redis: Arc<Redis>,
        name: &'static str,
    ) -> Limiter {
        Limiter {
            rate,
            clock,
            backend: Backend::Redis {
                redis,
                name,
                hit: Arc::new(Script::new(HIT)),
            },
        }
    }

    /// Takes one unit for `key`.
    ///
    /// Fails with [`Denied::Wait`] (the seconds until a unit is free again) or, for a shared
    /// store, [`Denied::Store`].
    pub async fn acquire(&self, key: &str) -> Result<Option<Permit>, Denied> {
        let Some(rate) = self.rate else {
            return Ok(None);
        };
        let now = self.clock.unix_millis();
        let window = rate.per.as_millis() as u64;
        match &self.backend {
            Backend::Memory(log) => Self::acquire_here(log, rate, now, window, key),
            Backend::Redis { redis, name, hit } => {
                let mut tag = [0u8; 8];
                rand::Rng::fill(&mut rand::thread_rng(), &mut tag);
                let member = format!("{now}-{}", hex::encode(tag));
                let (now_s, window_s, count_s) =
                    (now.to_string(), window.to_string(), rate.count.to_string());
                let wait: i64 = redis
                    .script(
                        "rate_limit",
                        hit,
                        &[&redis.key(&format!("r:{name}"), key.as_bytes())],
                        &[
                            now_s.as_bytes(),
                            window_s.as_bytes(),
                            count_s.as_bytes(),
                            member.as_bytes(),
                        ],
                    )
                    .await
                    .map_err(Denied::Store)?;
                if wait >= 0 {
                    return Err(Denied::Wait((wait as u64).div_ceil(1000).max(1)));
                }
                Ok(Some(Permit {
                    key: key.to_string(),
                    at_ms: now,
                    member,
                }))
            }
        }
    }

    fn acquire_here(
        log: &Mutex<Log>,
        rate: Rate,
        now: u64,
        window: u64,
        key: &str,
    ) -> Result<Option<Permit>, Denied> {
        let mut guard = log.lock();
        let log = &mut *guard;
        if log.keys.len() >= MAX_KEYS && !log.keys.contains_key(key) {
            if now.saturating_sub(log.last_sweep_ms) >= 1000 {
                log.last_sweep_ms = now;
                log.keys
                    .retain(|_, q| q.back().is_some_and(|t| t + window > now));
            }
            if log.keys.len() >= MAX_KEYS {
                tracing::warn!(keys = MAX_KEYS, "rate-limit table full: refusing new keys");
                return Err(Denied::Wait(rate.per.as_secs().clamp(1, 60)));
            }
        }
        let q = log.keys.entry(key.to_string()).or_default();
        while q.front().is_some_and(|t| t + window <= now) {
            q.pop_front();
        }
        if q.len() >= rate.count as usize {
            let oldest = q.front().copied().unwrap_or(now);
            let wait_ms = (oldest + window).saturating_sub(now);
            return Err(Denied::Wait(wait_ms.div_ceil(1000).max(1)));
        }
        q.push_back(now);
        Ok(Some(Permit {
            key: key.to_string(),
            at_ms: now,
            member: String::new(),
        }))
    }

    /// Gives a unit back (best effort with a shared store: a failed refund just counts).
    pub async fn refund(&self, permit: Option<Permit>) {
        let Some(p) = permit else { return };
        match &self.backend {
            Backend::Memory(log) => {
                let mut log = log.lock();
                if let Some(q) = log.keys.get_mut(&p.key) {
                    if let Some(pos) = q.iter().rposition(|t| *t == p.at_ms) {
                        q.remove(pos);
                    }
                    if q.is_empty() {
                        log.keys.remove(&p.key);
                    }
                }
            }
            Backend::Redis { redis, name, .. } => {
                let _: Result<i64, _> = redis
                    .query(
                        "rate_limit_refund",
                        redis::cmd("ZREM")
                            .arg(redis.key(&format!("r:{name}"), p.key.as_bytes()))
                            .arg(&p.member),
                    )
                    .await;
            }
        }
    }
}

/// Which limit: the index into [`RateLimits`]' table, and the name in logs and refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Codes sent to one phone or e-mail.
    CodeTarget,
    /// Codes requested from one client IP.
    CodeIp,
    /// Password attempts for one account.
    PasswordUser,
    /// Password attempts from one client IP.
    PasswordIp,
    /// Guest sign-ins from one client IP.
    AnonymousIp,
    /// Provider redirects started from one client IP.
    StartIp,
    /// Failed custom-ticket sign-ins from one client IP.
    TicketIp,
    /// Captchas started from one client IP.
    CaptchaIp,
}

impl Limit {
    const ALL: [Limit; 8] = [
        Limit::CodeTarget,
        Limit::CodeIp,
        Limit::PasswordUser,
        Limit::PasswordIp,
        Limit::AnonymousIp,
        Limit::StartIp,
        Limit::TicketIp,
        Limit::CaptchaIp,
    ];

    /// The name in logs and refusals.
    pub fn name(self) -> &'static str {
        match self {
            Limit::CodeTarget => "code_target",
            Limit::CodeIp => "code_ip",
            Limit::PasswordUser => "password_user",
            Limit::PasswordIp => "password_ip",
            Limit::AnonymousIp => "anonymous_ip",
            Limit::StartIp => "start_ip",
            Limit::TicketIp => "ticket_ip",
            Limit::CaptchaIp => "captcha_ip",
        }
    }

    fn rate(self, s: &RateLimitSettings) -> Option<Rate> {
        match self {
            Limit::CodeTarget => s.code_per_target,
            Limit::CodeIp => s.code_per_ip,
            Limit::PasswordUser => s.password_per_user,
            Limit::PasswordIp => s.password_per_ip,
            Limit::AnonymousIp => s.anonymous_per_ip,
            Limit::StartIp => s.start_per_ip,
            Limit::TicketIp => s.ticket_per_ip,
            Limit::CaptchaIp => s.captcha_per_ip,
        }
    }
}

/// The limits of the flows that call CloudBase for a visitor who is not signed in (or not
/// yet): every one is checked before CloudBase is called.
pub struct RateLimits {
    limiters: Vec<Limiter>,
}

/// Units taken from one or two limiters at once.
#[derive(Debug, Default)]
pub struct Permits(Vec<(Limit, Option<Permit>)>);

impl RateLimits {
    /// The limits from the configuration, counted in memory.
    pub fn new(s: &RateLimitSettings, clock: SharedClock) -> RateLimits {
        RateLimits {
            limiters: Limit::ALL
                .iter()
                .map(|l| Limiter::new(l.rate(s), clock.clone()))
                .collect(),
        }
    }

    /// The limits from the configuration, counted in Redis.
    pub fn redis(s: &RateLimitSettings, clock: SharedClock, redis: Arc<Redis>) -> RateLimits {
        RateLimits {
            limiters: Limit::ALL
                .iter()
                .map(|l| Limiter::redis(l.rate(s), clock.clone(), redis.clone(), l.name()))
                .collect(),
        }
    }

    fn limiter(&self, l: Limit) -> &Limiter {
        &self.limiters[l as usize]
    }

    async fn one(&self, l: Limit, key: &str) -> Result<Permits, LimitError> {
        match self.limiter(l).acquire(key).await {
            Ok(p) => Ok(Permits(vec![(l, p)])),
            Err(Denied::Wait(s)) => Err(LimitError::Refused(Refusal::new(l, s))),
            Err(Denied::Store(e)) => Err(LimitError::Store(e)),
        }
    }

    async fn both(&self, a: (Limit, &str), b: (Limit, &str)) -> Result<Permits, LimitError> {
        let mut first = self.one(a.0, a.1).await?;
        match self.one(b.0, b.1).await {
            Ok(mut second) => {
                first.0.append(&mut second.0);
                Ok(first)
            }
            Err(r) => {
                self.refund(first).await;
                Err(r)
            }
        }
    }

    /// One code for `target` (the contact's limit key: E.164 or case-folded) requested from
    /// `ip`.
    ///
    /// Fails when over a limit, or when the shared store fails.
    pub async fn code(&self, target: &str, ip: &str) -> Result<Permits, LimitError> {
        self.both((Limit::CodeTarget, target), (Limit::CodeIp, ip))
            .await
    }

    /// One password attempt for the account `account` (its key: see [`Accounts::key`]) from
    /// `ip`.
    ///
    /// Fails when over a limit, or when the shared store fails.
    pub async fn password(&self, account: &str, ip: &str) -> Result<Permits, LimitError> {
        self.both((Limit::PasswordUser, account), (Limit::PasswordIp, ip))
            .await
    }

    /// One guest sign-in from `ip`.
    ///
    /// Fails when over the limit, or when the shared store fails.
    pub async fn anonymous(&self, ip: &str) -> Result<Permits, LimitError> {
        self.one(Limit::AnonymousIp, ip).await
    }

    /// One provider redirect started from `ip`.
    ///
    /// Fails when over the limit, or when the shared store fails.
    pub async fn start(&self, ip: &str) -> Result<Permits, LimitError> {
        self.one(Limit::StartIp, ip).await
    }

    /// One custom-ticket sign-in from `ip` (refunded when the ticket signs in).
    ///
    /// Fails when over the limit, or when the shared store fails.
    pub async fn ticket(&self, ip: &str) -> Result<Permits, LimitError> {
        self.one(Limit::TicketIp, ip).await
    }

    /// One captcha started from `ip`.
    ///
    /// Fails when over the limit, or when the shared store fails.
    pub async fn captcha(&self, ip: &str) -> Result<Permits, LimitError> {
        self.one(Limit::CaptchaIp, ip).await
    }

    /// Gives the units back.
    pub async fn refund(&self, permits: Permits) {
        for (l, p) in permits.0 {
            self.limiter(l).refund(p).await;
        }
    }
}

/// Why a limited step may not go on.
#[derive(Debug)]
pub enum LimitError {
    /// Over a limit (429).
    Refused(Refusal),
    /// The shared store failed (503).
    Store(StoreError),
}

/// A refused request: which limit, and the seconds to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The limit that refused (its [`Limit::name`]).
    pub limit: &'static str,
    /// Seconds until the next attempt may pass.
    pub retry_after: u64,
}

impl Refusal {
    fn new(l: Limit, retry_after: u64) -> Refusal {
        Refusal {
            limit: l.name(),
            retry_after,
        }
    }
}

/// What kind of sign-in name a known name is. Kept apart, since a user name may look like
/// an e-mail address (`victim@example.com` is a valid user name): a name is only ever matched
/// against the names of its own kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A user name.
    User,
    /// An e-mail address.
    Email,
    /// A phone number (E.164).
    Phone,
}

impl NameKind {
    fn tag(self) -> &'static str {
        match self {
            NameKind::User => "user",
            NameKind::Email => "email",
            NameKind::Phone => "phone",
        }
    }
}

/// Which sign-in names belong to one account, learned whenever someone signs in (the
/// account's user name, e-mail and phone from its profile), by kind and limit key. The
/// password limit counts every name of a known account as one ([`Accounts::key`]), and a
/// password reset finds whose sessions to end. In memory, bounded (when full, the names not
/// seen for longest are forgotten first); or in Redis, shared by the replicas, as
/// `Pn:<keyed hash of kind:name>` holding the uid sealed under a key derived from the name,
/// kept for `ttl` after the last sign-in.
pub struct Accounts {
    backend: AccountsBackend,
    clock: SharedClock,
}

enum AccountsBackend {
    Memory {
        names: Mutex<HashMap<String, (String, u64)>>,
        capacity: usize,
    },
    Redis {
        redis: Arc<Redis>,
        sealer: crate::store::RecordSealer,
        ttl: Duration,
    },
}

const ACCOUNT_AAD: &str = "cloudbase-gateway/account-name/v1:";

impl Accounts {
    /// A map of at most `capacity` names, in memory.
    pub fn new(capacity: usize, clock: SharedClock) -> Accounts {
        Accounts {
            backend: AccountsBackend::Memory {
                names: Mutex::new(HashMap::new()),
                capacity: capacity.max(16),
            },
            clock,
        }
    }

    /// Names in Redis, each kept for `ttl` after it was last learned.
    pub fn redis(
        redis: Arc<Redis>,
        sealer: crate::store::RecordSealer,
        ttl: Duration,
        clock: SharedClock,
    ) -> Accounts {
        Accounts {
            backend: AccountsBackend::Redis { redis, sealer, ttl },
            clock,
        }
    }

    /// Records that the names (limit keys; empty ones are skipped) belong to user `sub`
    /// (best effort with a shared store: a name not learned only counts on its own).
    pub async fn learn<'a>(&self, names: impl IntoIterator<Item = (NameKind, &'a str)>, sub: &str) {
        let now = self.clock.unix_secs();
        match &self.backend {
            AccountsBackend::Memory {
                names: map,
                capacity,
            } => {
                let mut map = map.lock();
                for (kind, name) in names.into_iter().filter(|(_, n)| !n.is_empty()) {
                    let key = format!("{}:{name}", kind.tag());
                    if map.len() >= *capacity && !map.contains_key(&key) {
                        // Forget the older half at once, so a full map costs one sort per
                        // many names.
                        let mut seen: Vec<u64> = map.values().map(|(_, t)| *t).collect();
                        seen.sort_unstable();
                        let cut = seen[seen.len() / 2];
                        map.retain(|_, (_, t)| *t > cut);
                    }
                    map.insert(key, (sub.to_string(), now));
                }
            }
            AccountsBackend::Redis { redis, sealer, ttl } => {
                for (kind, name) in names.into_iter().filter(|(_, n)| !n.is_empty()) {
                    let owner = format!("{}:{name}", kind.tag());
                    let key = redis.key("n", owner.as_bytes());
                    let sealed = sealer.seal(
                        owner.as_bytes(),
                        format!("{ACCOUNT_AAD}{key}").as_bytes(),
                        sub.as_bytes(),
                    );
                    let _: Result<(), _> = redis
                        .query(
                            "account_learn",
                            redis::cmd("SET")
                                .arg(&key)
                                .arg(sealed)
                                .arg("EX")
                                .arg(ttl.as_secs().max(1)),
                        )
                        .await;
                }
            }
        }
    }

    /// The user a name (limit key) of `kind` is known to belong to.
    ///
    /// Fails when the shared store fails.
    pub async fn account_of(
        &self,
        kind: NameKind,
        name: &str,
    ) -> Result<Option<String>, StoreError> {
        let owner = format!("{}:{name}", kind.tag());
        match &self.backend {
            AccountsBackend::Memory { names, .. } => {
                Ok(names.lock().get(&owner).map(|(sub, _)| sub.clone()))
            }
            AccountsBackend::Redis { redis, sealer, .. } => {
                let key = redis.key("n", owner.as_bytes());
                let raw: Option<Vec<u8>> = redis
                    .query("account_read", redis::cmd("GET").arg(&key))
                    .await?;
                Ok(raw
                    .and_then(|raw| {
                        sealer.open(
                            owner.as_bytes(),
                            format!("{ACCOUNT_AAD}{key}").as_bytes(),
                            &raw,
                        )
                    })
                    .and_then(|sub| String::from_utf8(sub).ok()))
            }
        }
    }

    /// The key the password limit counts attempts on the login name `name` (a limit key)
    /// under: its account when exactly one account is known by that name (a phone number is
    /// a phone; a name with `@` is an e-mail or a user name; anything else a user name), so
    /// the user name, e-mail and phone of one user share one count; else the name itself.
    ///
    /// Fails when the shared store fails.
    pub async fn key(&self, name: &str) -> Result<String, StoreError> {
        let kinds: &[NameKind] = if name.starts_with('+') {
            &[NameKind::Phone, NameKind::User]
        } else if name.contains('@') {
            &[NameKind::Email, NameKind::User]
        } else {
            &[NameKind::User]
        };
        let mut subs: Vec<String> = Vec::new();
        for k in kinds {
            if let Some(sub) = self.account_of(*k, name).await? {
                subs.push(sub);
            }
        }
        subs.dedup();
        Ok(match subs.as_slice() {
            [sub] => format!("uid:{sub}"),
            _ => format!("name:{name}"),
        })
    }
}

/// The rate-limit key of a client address: IPv4 as is, IPv6 by its /64 (one customer's
/// network hands out a whole /64, so single addresses would give unlimited budgets).
pub fn client_key(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

impl Rate {
    /// `count` per `per`.
    pub fn new(count: u32, per: Duration) -> Rate {
        Rate { count, per }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    fn wait(r: Result<Option<Permit>, Denied>) -> u64 {
        match r {
            Err(Denied::Wait(s)) => s,
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    #[actix_web::test]
    async fn a_sliding_window_with_exact_waits_and_refunds() {
        let clock = Arc::new(ManualClock::default());
        let l = Limiter::new(Some(Rate::new(2, Duration::from_secs(60))), clock.clone());
        let a = l.acquire("k").await.unwrap();
        clock.advance(Duration::from_secs(10));
        let _b = l.acquire("k").await.unwrap();
        assert_eq!(wait(l.acquire("k").await), 50);
        assert!(l.acquire("other").await.is_ok(), "keys are separate");
        l.refund(a).await;
        assert!(
            l.acquire("k").await.is_ok(),
            "a refunded unit is free again"
        );
        // Both units in the log are now from t=10.
        assert_eq!(wait(l.acquire("k").await), 60);
        clock.advance(Duration::from_secs(60));
        assert!(l.acquire("k").await.is_ok(), "the oldest left the window");
        let off = Limiter::new(None, clock);
        for _ in 0..100 {
            assert!(off.acquire("k").await.unwrap().is_none());
        }
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        let a: std::net::IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: std::net::IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_eq!(client_key("::ffff:1.2.3.4".parse().unwrap()), "1.2.3.4");
        assert_eq!(client_key("1.2.3.4".parse().unwrap()), "1.2.3.4");
    }

    #[actix_web::test]
    async fn an_accounts_names_share_one_password_key() {
        let clock = Arc::new(ManualClock::default());
        let a = Accounts::new(16, clock.clone());
        assert_eq!(a.key("alice").await.unwrap(), "name:alice");
        a.learn(
            [
                (NameKind::User, "alice"),
                (NameKind::Email, "alice@example.com"),
                (NameKind::Phone, "+8613800000001"),
                (NameKind::User, ""),
            ],
            "uid-1",
        )
        .await;
        for n in ["alice", "alice@example.com", "+8613800000001"] {
            assert_eq!(a.key(n).await.unwrap(), "uid:uid-1", "{n}");
        }
        assert_eq!(
            a.account_of(NameKind::Phone, "+8613800000001")
                .await
                .unwrap()
                .as_deref(),
            Some("uid-1")
        );
        assert_eq!(
            a.account_of(NameKind::User, "+8613800000001")
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            a.key("").await.unwrap(),
            "name:",
            "empty names are never learned"
        );
        // A user name that looks like someone's e-mail does not take that e-mail over.
        a.learn([(NameKind::User, "bob@example.com")], "uid-evil")
            .await;
        a.learn([(NameKind::Email, "bob@example.com")], "uid-bob")
            .await;
        assert_eq!(
            a.key("bob@example.com").await.unwrap(),
            "name:bob@example.com",
            "ambiguous"
        );
        assert_eq!(
            a.account_of(NameKind::Email, "bob@example.com")
                .await
                .unwrap()
                .as_deref(),
            Some("uid-bob")
        );
        // Full: the names not seen for longest go first.
        for i in 0..40 {
            clock.advance(Duration::from_secs(1));
            let name = format!("user{i}");
            a.learn([(NameKind::User, name.as_str())], &format!("uid-{i}"))
                .await;
        }
        let AccountsBackend::Memory { names, .. } = &a.backend else {
            panic!("memory")
        };
        assert!(names.lock().len() <= 16);
        assert_eq!(a.account_of(NameKind::User, "alice").await.unwrap(), None);
        assert_eq!(
            a.account_of(NameKind::User, "user39")
                .await
                .unwrap()
                .as_deref(),
            Some("uid-39")
        );
    }

    #[actix_web::test]
    async fn a_refusal_by_the_second_limit_gives_the_first_unit_back() {
        let clock = Arc::new(ManualClock::default());
        let s = RateLimitSettings {
            code_per_target: Some(Rate::new(1, Duration::from_secs(60))),
            code_per_ip: Some(Rate::new(2, Duration::from_secs(3600))),
            password_per_user: None,
            password_per_ip: None,
            anonymous_per_ip: None,
            start_per_ip: None,
            ticket_per_ip: None,
            captcha_per_ip: None,
        };
        let r = RateLimits::new(&s, clock.clone());
        let refused = |e: LimitError| match e {
            LimitError::Refused(r) => r,
            LimitError::Store(e) => panic!("{e}"),
        };
        r.code("a@example.com", "1.2.3.4").await.unwrap();
        let e = refused(r.code("a@example.com", "5.6.7.8").await.unwrap_err());
        assert_eq!((e.limit, e.retry_after), ("code_target", 60));
        r.code("b@example.com", "1.2.3.4").await.unwrap();
        let e = refused(r.code("c@example.com", "1.2.3.4").await.unwrap_err());
        assert_eq!(e.limit, "code_ip");
        // c's unit was given back when the IP limit refused.
        r.code("c@example.com", "9.9.9.9").await.unwrap();
    }
}
