//! One conformance suite for every store backend: memory, and Redis standalone, with an ACL
//! user, over TLS, behind sentinels and as a cluster (real `redis-server`s on ephemeral
//! ports). Each case runs against two "replicas" (two independent store sets on one Redis),
//! so what one writes the other reads. Time is a manual clock; nothing sleeps to expire.

#[path = "harness/redis.rs"]
mod redis_servers;

use std::sync::Arc;
use std::time::Duration;

use cloudbase_gateway::clock::{Clock, ManualClock, SharedClock};
use cloudbase_gateway::config::{Rate, RateLimitSettings, StoreSettings};
use cloudbase_gateway::entropy::{OsEntropy, SharedEntropy};
use cloudbase_gateway::flow::store::{Browser, FlowStore};
use cloudbase_gateway::flows::captcha::TokenCache;
use cloudbase_gateway::keyring::Keyring;
use cloudbase_gateway::metrics::Metrics;
use cloudbase_gateway::ratelimit::{LimitError, RateLimits};
use cloudbase_gateway::secret::Secret;
use cloudbase_gateway::session::memory::MemoryStore;
use cloudbase_gateway::session::redis::RedisSessionStore;
use cloudbase_gateway::session::{SessionKey, SessionRecord, SessionStore};
use cloudbase_gateway::store::redis::Redis;
use cloudbase_gateway::store::RecordSealer;

/// One replica's stores.
struct Replica {
    redis: Option<Arc<Redis>>,
    sessions: Arc<dyn SessionStore>,
    redis_sessions: Option<Arc<RedisSessionStore>>,
    flows: FlowStore<String>,
    limits: RateLimits,
    tokens: TokenCache,
}

fn limits() -> RateLimitSettings {
    RateLimitSettings {
        code_per_target: Some(Rate::new(1, Duration::from_secs(60))),
        code_per_ip: Some(Rate::new(2, Duration::from_secs(3600))),
        password_per_user: Some(Rate::new(2, Duration::from_secs(60))),
        password_per_ip: None,
        anonymous_per_ip: None,
        start_per_ip: None,
        ticket_per_ip: None,
        captcha_per_ip: None,
    }
}

const OLD_SECRET: &str = "conformance-secret-0123456789abcdef0123";
const NEW_SECRET: &str = "conformance-rotated-0123456789abcdef01";

fn keyring(rotated: bool) -> Keyring {
    let secrets = if rotated {
        vec![Secret::new(NEW_SECRET), Secret::new(OLD_SECRET)]
    } else {
        vec![Secret::new(OLD_SECRET)]
    };
    Keyring::new(Some(&secrets), &OsEntropy)
}

/// Two replicas on `config` (`None`: memory, where both share one process's stores); the
/// second with a rotated `cookie_secret` (a new one in front of the old) when `rotated`.
fn replicas(config: Option<&str>, clock: SharedClock) -> (Replica, Replica) {
    replicas_with(config, clock, false)
}

fn replicas_with(config: Option<&str>, clock: SharedClock, rotated: bool) -> (Replica, Replica) {
    let entropy: SharedEntropy = Arc::new(OsEntropy);
    let k = keyring(false);
    let Some(config) = config else {
        let sessions: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(1000, clock.clone()));
        let one = || Replica {
            redis: None,
            sessions: sessions.clone(),
            redis_sessions: None,
            flows: FlowStore::new(
                1000,
                Duration::from_secs(600),
                clock.clone(),
                entropy.clone(),
            ),
            limits: RateLimits::new(&limits(), clock.clone()),
            tokens: TokenCache::new(1000, clock.clone()),
        };
        // In memory there is one process: both "replicas" are the same stores.
        let a = one();
        let b = Replica {
            redis: None,
            sessions: a.sessions.clone(),
            redis_sessions: None,
            flows: FlowStore::new(1, Duration::from_secs(1), clock.clone(), entropy.clone()),
            limits: RateLimits::new(&limits(), clock.clone()),
            tokens: TokenCache::new(1, clock.clone()),
        };
        return (a, b);
    };
    let text = format!(
        "env_id = \"e\"\npublic_url = \"https://gw.example.com\"\nupstream = \"http://127.0.0.1:1\"\nsession_store_type = \"redis\"\ncookie_secret = \"conformance-secret-0123456789abcdef0123\"\nredis_timeout = \"3s\"\n{config}"
    );
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    let cfg = cloudbase_gateway::config::load(Some(f.path()), Vec::<(String, String)>::new(), [])
        .unwrap_or_else(|e| panic!("{e}"));
    let StoreSettings::Redis(settings) = cfg.store else {
        panic!("redis settings")
    };
    let k2 = keyring(rotated);
    let one = |k: &Keyring| {
        let sealer = |p: &str| RecordSealer::new(k.derive(p), entropy.clone());
        let redis = Arc::new(Redis::new(
            (*settings).clone(),
            k.derive("redis-names"),
            Arc::new(Metrics::default()),
        ));
        let rs = Arc::new(RedisSessionStore::new(
            redis.clone(),
            clock.clone(),
            entropy.clone(),
            Duration::from_secs(5),
            // The near cache has its own test: here every read must see the other replica's
            // writes at once.
            None,
        ));
        Replica {
            redis: Some(redis.clone()),
            sessions: rs.clone(),
            redis_sessions: Some(rs),
            flows: FlowStore::redis(
                redis.clone(),
                sealer("flow-seal"),
                Duration::from_secs(600),
                clock.clone(),
                entropy.clone(),
            ),
            limits: RateLimits::redis(&limits(), clock.clone(), redis.clone()),
            tokens: TokenCache::redis(redis, sealer("captcha-token-seal"), clock.clone()),
        }
    };
    (one(&k), one(&k2))
}

fn record(clock: &ManualClock, sub: &str, token: &str) -> SessionRecord {
    let now = clock.unix_secs();
    SessionRecord {
        access_token: Secret::new(token),
        refresh_token: Some(Secret::new(format!("rt-{token}"))),
        expires_at: now + 7200,
        refresh_expires_at: now + 86400,
        scope: "openid".into(),
        sub: sub.into(),
        user: Default::default(),
        device_id: "device".into(),
        created_at: now,
        last_seen: now,
        version: 1,
        headers: Default::default(),
    }
}

fn handle() -> SessionKey {
    let mut h = [0u8; 32];
    cloudbase_gateway::entropy::Entropy::fill(&OsEntropy, &mut h);
    SessionKey::from_handle(&h)
}

async fn sessions(a: &Replica, b: &Replica, clock: &ManualClock) {
    let key = handle();
    a.sessions
        .put(&key, record(clock, "user-1", "tok-a"))
        .await
        .unwrap();
    let got = b
        .sessions
        .get(&key)
        .await
        .unwrap()
        .expect("written by A, read by B");
    assert_eq!(got.access_token.expose(), "tok-a");
    assert_eq!(got.refresh_token.as_ref().unwrap().expose(), "rt-tok-a");
    // Compare-and-swap on the version: one of two writers from the same version wins.
    let mut next = (*got).clone();
    next.version = 2;
    next.access_token = Secret::new("tok-b");
    let (x, y) = futures_util::join!(
        a.sessions.compare_and_swap(&key, 1, next.clone()),
        b.sessions.compare_and_swap(&key, 1, next.clone())
    );
    assert!(x.unwrap() ^ y.unwrap(), "exactly one swap wins");
    assert!(!a
        .sessions
        .compare_and_swap(&key, 1, next.clone())
        .await
        .unwrap());
    assert_eq!(
        a.sessions
            .get(&key)
            .await
            .unwrap()
            .unwrap()
            .access_token
            .expose(),
        "tok-b"
    );

    // The user's index, across replicas.
    let other = handle();
    b.sessions
        .put(&other, record(clock, "user-1", "tok-c"))
        .await
        .unwrap();
    let third = handle();
    b.sessions
        .put(&third, record(clock, "user-2", "tok-d"))
        .await
        .unwrap();
    let mut of = a.sessions.sessions_of("user-1").await.unwrap();
    of.sort_by_key(|k| *k.id());
    let mut want = vec![key, other];
    want.sort_by_key(|k| *k.id());
    assert_eq!(of, want);
    b.sessions.delete(&other).await.unwrap();
    assert_eq!(a.sessions.sessions_of("user-1").await.unwrap(), vec![key]);
    assert!(
        a.sessions.get(&other).await.unwrap().is_none(),
        "deleted on B, gone on A"
    );
    // A key known only by its id (from the index) can be deleted.
    a.sessions
        .delete(&SessionKey::from_id(*third.id()))
        .await
        .unwrap();
    assert!(b.sessions.get(&third).await.unwrap().is_none());

    // Expiry by the record's own time, by the injected clock.
    let short = handle();
    let mut r = record(clock, "user-3", "tok-e");
    r.refresh_expires_at = clock.unix_secs() + 30;
    a.sessions.put(&short, r).await.unwrap();
    assert!(b.sessions.get(&short).await.unwrap().is_some());
    clock.advance(Duration::from_secs(31));
    assert!(
        b.sessions.get(&short).await.unwrap().is_none(),
        "expired by the clock"
    );
    assert!(a.sessions.sessions_of("user-3").await.unwrap().len() <= 1);
    a.sessions.ping().await.unwrap();

    // Regression (review): a refresh extends the session, and its user's index with it, so
    // "sign out everywhere" still finds a session refreshed past its first lifetime.
    let long = handle();
    a.sessions
        .put(&long, record(clock, "user-4", "tok-f"))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(80_000));
    let mut next = record(clock, "user-4", "tok-g");
    next.version = 2;
    assert!(b.sessions.compare_and_swap(&long, 1, next).await.unwrap());
    if let Some(redis) = &a.redis {
        let index = redis.key("u", b"user-4");
        let pttl: i64 = redis
            .query("test", redis::cmd("PTTL").arg(&index))
            .await
            .unwrap();
        assert!(
            pttl > 80_000_000,
            "the index lives as long as the refreshed session: {pttl}"
        );
    }
    assert_eq!(a.sessions.sessions_of("user-4").await.unwrap(), vec![long]);
}

async fn flows(a: &Replica, b: &Replica, clock: &ManualClock, shared: bool) {
    let me = Browser::from_csrf("csrf-me");
    let other = Browser::from_csrf("csrf-other");
    let (x, y) = if shared { (a, b) } else { (a, a) };
    let id = x
        .flows
        .create(me, "secret-flow-value".into())
        .await
        .unwrap();
    assert_eq!(
        y.flows.get(&id, me).await.unwrap().as_deref(),
        Some("secret-flow-value")
    );
    assert_eq!(
        y.flows.get(&id, other).await.unwrap(),
        None,
        "another browser"
    );
    assert!(
        y.flows.take(&id, other).await.unwrap().is_none(),
        "another browser cannot take it"
    );
    assert!(y.flows.update(&id, me, "v2".into(), false).await.unwrap());
    assert!(!y
        .flows
        .update(&id, other, "v3".into(), false)
        .await
        .unwrap());
    // Single use under a race: 16 concurrent takes over both replicas, one wins.
    let takes = (0..16).map(|i| {
        let s = if i % 2 == 0 { &x.flows } else { &y.flows };
        s.take(&id, me)
    });
    let results = futures_util::future::join_all(takes).await;
    let won: Vec<_> = results
        .into_iter()
        .map(|r| r.unwrap())
        .filter(Option::is_some)
        .collect();
    assert_eq!(won, vec![Some("v2".to_string())], "exactly one take wins");
    // Taken for a step and put back.
    let id = x.flows.create(me, "step".into()).await.unwrap();
    let t = y.flows.take_for_step(&id, me).await.unwrap().unwrap();
    assert!(x.flows.get(&id, me).await.unwrap().is_none());
    t.put_back(&y.flows).await;
    assert_eq!(
        x.flows.take(&id, me).await.unwrap().as_deref(),
        Some("step")
    );
    // Expiry by the clock.
    let id = x.flows.create(me, "old".into()).await.unwrap();
    clock.advance(Duration::from_secs(601));
    assert!(y.flows.get(&id, me).await.unwrap().is_none(), "expired");
    assert!(y.flows.take(&id, me).await.unwrap().is_none());
    assert!(y.flows.get("not-an-id", me).await.unwrap().is_none());
}

fn wait(e: LimitError) -> (&'static str, u64) {
    match e {
        LimitError::Refused(r) => (r.limit, r.retry_after),
        LimitError::Store(e) => panic!("{e}"),
    }
}

async fn limits_case(a: &Replica, b: &Replica, clock: &ManualClock, shared: bool) {
    let (x, y) = if shared { (a, b) } else { (a, a) };
    let ip = format!("10.0.0.{}", rand_byte());
    let first = x.limits.password("uid:limit-user", &ip).await.unwrap();
    clock.advance(Duration::from_secs(10));
    let _second = y.limits.password("uid:limit-user", &ip).await.unwrap();
    assert_eq!(
        wait(x.limits.password("uid:limit-user", &ip).await.unwrap_err()),
        ("password_user", 50),
        "the replicas share one count"
    );
    x.limits.refund(first).await;
    y.limits
        .password("uid:limit-user", &ip)
        .await
        .expect("a refunded unit is free again");
    assert_eq!(
        wait(y.limits.password("uid:limit-user", &ip).await.unwrap_err()).1,
        60
    );
    clock.advance(Duration::from_secs(60));
    x.limits
        .password("uid:limit-user", &ip)
        .await
        .expect("the window moved on");
    // Two limits at once: a refusal by the second gives the first unit back.
    let t = format!("t{}@example.com", rand_byte());
    x.limits.code(&t, &ip).await.unwrap();
    assert_eq!(
        wait(y.limits.code(&t, "5.6.7.8").await.unwrap_err()).0,
        "code_target"
    );
    y.limits.code(&format!("b{t}"), &ip).await.unwrap();
    assert_eq!(
        wait(x.limits.code(&format!("c{t}"), &ip).await.unwrap_err()).0,
        "code_ip"
    );
    y.limits
        .code(&format!("c{t}"), "9.9.9.9")
        .await
        .expect("c's unit was given back");
}

fn rand_byte() -> u8 {
    let mut b = [0u8; 1];
    cloudbase_gateway::entropy::Entropy::fill(&OsEntropy, &mut b);
    b[0]
}

async fn tokens(a: &Replica, b: &Replica, clock: &ManualClock, shared: bool) {
    let (x, y) = if shared { (a, b) } else { (a, a) };
    let br = Browser::from_csrf("csrf-captcha");
    x.tokens.put(br, Secret::new("captcha-token-1"), 300).await;
    assert_eq!(
        y.tokens.get(br).await.unwrap().unwrap().expose(),
        "captcha-token-1"
    );
    clock.advance(Duration::from_secs(291));
    assert!(
        y.tokens.get(br).await.unwrap().is_none(),
        "kept until ten seconds before expiry"
    );
    x.tokens.put(br, Secret::new("captcha-token-2"), 300).await;
    y.tokens.forget(br).await;
    assert!(x.tokens.get(br).await.unwrap().is_none());
}

async fn lock(a: &Replica, b: &Replica) {
    let key = handle();
    // Held: a second holder (on the other replica) waits until the first lets go.
    let held = a.sessions.refresh_lock(&key).await.unwrap();
    let waiting = b.sessions.refresh_lock(&key);
    futures_util::pin_mut!(waiting);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiting)
            .await
            .is_err(),
        "the lock is held"
    );
    drop(held);
    let second = waiting.await.expect("released: the next holder gets it");
    drop(second);

    let (Some(ra), Some(rb)) = (&a.redis_sessions, &b.redis_sessions) else {
        return;
    };
    // Only the owner releases or renews.
    let name = ra.lock_name(&key);
    // The release of `second` runs in the background: wait for it (bounded).
    let mut tries = 0;
    while !ra
        .try_lock(&name, b"owner-1", Duration::from_secs(10))
        .await
        .unwrap()
    {
        tries += 1;
        assert!(tries < 200, "released lock never free");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !rb.try_lock(&name, b"owner-2", Duration::from_secs(10))
            .await
            .unwrap(),
        "held"
    );
    assert!(
        !rb.unlock(&name, b"owner-2").await.unwrap(),
        "not the owner"
    );
    assert!(!rb
        .renew(&name, b"owner-2", Duration::from_secs(10))
        .await
        .unwrap());
    assert!(ra
        .renew(&name, b"owner-1", Duration::from_secs(10))
        .await
        .unwrap());
    assert!(ra.unlock(&name, b"owner-1").await.unwrap());
    assert!(
        rb.try_lock(&name, b"owner-2", Duration::from_secs(10))
            .await
            .unwrap(),
        "released"
    );
    assert!(rb.unlock(&name, b"owner-2").await.unwrap());
    // A crashed holder: its lease runs out, and a waiter takes the lock then.
    let crashed = handle();
    let name = ra.lock_name(&crashed);
    assert!(ra
        .try_lock(&name, b"crashed", Duration::from_millis(400))
        .await
        .unwrap());
    let got = tokio::time::timeout(Duration::from_secs(10), rb.refresh_lock(&crashed))
        .await
        .expect("the expired lease frees the lock")
        .unwrap();
    drop(got);
}

/// After a rotation (a new secret in front of the old one), what the old replica wrote is
/// still found: sessions by the user's index, flows, captcha tokens and limit counts.
async fn rotation(config: &str) {
    let clock = Arc::new(ManualClock::default());
    let (old, new) = replicas_with(Some(config), clock.clone(), true);
    let key = handle();
    old.sessions
        .put(&key, record(&clock, "user-rot", "tok-r"))
        .await
        .unwrap();
    assert_eq!(
        new.sessions.sessions_of("user-rot").await.unwrap(),
        vec![key]
    );
    let me = Browser::from_csrf("csrf-rot");
    let id = old.flows.create(me, "rot".into()).await.unwrap();
    assert_eq!(
        new.flows.take(&id, me).await.unwrap().as_deref(),
        Some("rot")
    );
    old.tokens.put(me, Secret::new("captcha-rot"), 300).await;
    assert_eq!(
        new.tokens.get(me).await.unwrap().unwrap().expose(),
        "captcha-rot"
    );
    let ip = format!("10.9.9.{}", rand_byte());
    old.limits.password("uid:rot", &ip).await.unwrap();
    old.limits.password("uid:rot", &ip).await.unwrap();
    assert_eq!(
        wait(new.limits.password("uid:rot", &ip).await.unwrap_err()).0,
        "password_user"
    );
}

async fn suite(config: Option<&str>) {
    let clock = Arc::new(ManualClock::default());
    let (a, b) = replicas(config, clock.clone());
    let shared = config.is_some();
    sessions(&a, &b, &clock).await;
    flows(&a, &b, &clock, shared).await;
    limits_case(&a, &b, &clock, shared).await;
    tokens(&a, &b, &clock, shared).await;
    lock(&a, &b).await;
    if let Some(config) = config {
        rotation(config).await;
    }
}

#[actix_web::test]
async fn memory() {
    suite(None).await;
}

#[actix_web::test]
async fn redis_standalone() {
    let t = redis_servers::standalone();
    suite(Some(&t.config)).await;
}

#[actix_web::test]
async fn redis_acl_user_and_password() {
    let t = redis_servers::acl();
    suite(Some(&t.config)).await;
    // The default user is off: without the ACL user nothing gets in.
    let out = redis_servers::cli(t.servers[0].port, &[], &["PING"]);
    assert!(!out.contains("PONG"), "{out}");
}

#[actix_web::test]
async fn redis_tls() {
    let t = redis_servers::tls();
    suite(Some(&t.config)).await;
}

#[actix_web::test]
async fn redis_sentinel() {
    let s = redis_servers::sentinel();
    suite(Some(&s.topology.config)).await;
}

#[actix_web::test]
async fn redis_cluster() {
    let t = redis_servers::cluster();
    suite(Some(&t.config)).await;
}

/// Whether `check` holds within a second (polled: the invalidation travels through Redis).
async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

/// Two replicas with near caches on `config`: a record cached on A is dropped as soon as B
/// changes or deletes it (the clock never moves here, so only the invalidation can do it).
async fn near_cache(config: &str) {
    let clock = Arc::new(ManualClock::default());
    let (a, _) = replicas(Some(config), clock.clone());
    let redis = a.redis.clone().unwrap();
    let entropy: SharedEntropy = Arc::new(OsEntropy);
    let store = |r: &Arc<Redis>| {
        RedisSessionStore::new(
            r.clone(),
            clock.clone(),
            entropy.clone(),
            Duration::from_secs(5),
            Some(1000),
        )
    };
    let near_a = store(&redis);
    let near_b = store(&redis);
    let key = handle();
    // Wait (bounded) until A's subscription is up: a record read is then kept.
    near_a
        .put(&key, record(&clock, "near-user", "tok-1"))
        .await
        .unwrap();
    let mut tries = 0;
    loop {
        assert!(near_a.get(&key).await.unwrap().is_some());
        let raw = redis_servers_delete_behind(&redis, &near_a, &key).await;
        if raw {
            break;
        }
        tries += 1;
        assert!(tries < 200, "the near cache never came up");
        near_a
            .put(&key, record(&clock, "near-user", "tok-1"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Cached on A; B rewrites it: A drops its copy when B's message arrives.
    near_a
        .put(&key, record(&clock, "near-user", "tok-1"))
        .await
        .unwrap();
    assert_eq!(
        near_a
            .get(&key)
            .await
            .unwrap()
            .unwrap()
            .access_token
            .expose(),
        "tok-1"
    );
    let mut next = record(&clock, "near-user", "tok-2");
    next.version = 2;
    assert!(near_b.compare_and_swap(&key, 1, next).await.unwrap());
    let mut seen = String::new();
    for _ in 0..200 {
        seen = near_a
            .get(&key)
            .await
            .unwrap()
            .unwrap()
            .access_token
            .expose()
            .to_string();
        if seen == "tok-2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(seen, "tok-2", "B's change reached A's near cache");
    // B signs the session out: A refuses it once the message arrives.
    near_b.delete(&key).await.unwrap();
    assert!(
        eventually(|| async { near_a.get(&key).await.unwrap().is_none() }).await,
        "a sign-out on B is honoured by A"
    );
    // The refresh path reads past the cache.
    near_a
        .put(&key, record(&clock, "near-user", "tok-3"))
        .await
        .unwrap();
    assert_eq!(
        near_a
            .get_uncached(&key)
            .await
            .unwrap()
            .unwrap()
            .access_token
            .expose(),
        "tok-3"
    );
}

/// Whether A serves `key` from its near cache: the record is deleted behind the stores'
/// backs (straight in Redis, no message), and A still has it.
async fn redis_servers_delete_behind(
    redis: &Redis,
    a: &RedisSessionStore,
    key: &SessionKey,
) -> bool {
    let name = a.lock_name(key).replace(":lock", ":s");
    let _: i64 = redis
        .query("test", redis::cmd("DEL").arg(&name))
        .await
        .unwrap();
    a.get(key).await.unwrap().is_some()
}

#[actix_web::test]
async fn near_cache_standalone() {
    let t = redis_servers::standalone();
    near_cache(&t.config).await;
}

#[actix_web::test]
async fn near_cache_cluster() {
    let t = redis_servers::cluster();
    near_cache(&t.config).await;
}
