//! Replicas sharing one Redis over real HTTP: two gateways with one configuration (one
//! emulator, one upstream, one `redis-server` started here), a browser moving between them
//! as a load balancer would send it, a gateway restarted, and Redis paused, killed and
//! restarted empty under it. Where the flows need no clock, the replicas are two real
//! `cloudbase-gateway serve` processes; where a test moves time (a refresh falling due, the
//! near cache's half second, Redis paused), they are two gateways in this process, each with
//! its own stores, server and clock.

mod common;
mod harness;
#[path = "harness/redis.rs"]
mod redis_servers;

use std::time::Duration;

use harness::{consent, query, send_code, start, Browser};

const SECRET: &str = "cookie_secret = \"shared-state-secret-0123456789abcdef\"\n";

fn redis_config(t: &redis_servers::Topology, extra: &str) -> String {
    format!(
        "session_store_type = \"redis\"\n{SECRET}{}redis_timeout = \"500ms\"\nproviders = [\"github=GitHub\"]\n{extra}",
        t.config
    )
}

/// `(status, set-cookie headers)` of a JSON request with the browser's cookies.
async fn api(b: &Browser, path: &str) -> (u16, Vec<String>) {
    let resp = b
        .http
        .get(b.url(path))
        .insert_header(("accept", "application/json"))
        .insert_header(("cookie", b.cookie_header()))
        .send()
        .await
        .unwrap();
    let cookies = resp
        .headers()
        .get_all("set-cookie")
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    (resp.status().as_u16(), cookies)
}

/// Whether `api(b, path)` answers `want` within five seconds (polled; Redis coming back or
/// emptied is noticed at the next operation, not at once).
async fn soon(b: &Browser, path: &str, want: u16) -> bool {
    for _ in 0..50 {
        if api(b, path).await.0 == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn status(url: &str) -> u16 {
    awc::Client::new()
        .get(url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[actix_web::test]
async fn a_session_started_on_one_replica_works_on_the_other_and_ends_on_both() {
    let redis = redis_servers::standalone();
    let a = start(&redis_config(&redis, "")).await;
    let b = a.replica();
    let on_a = a.signed_in("alice", "alice-pass-1").await;
    let on_b = on_a.on(&b.url);
    let (st, seen) = on_b.upstream("/dash").await;
    assert_eq!(st, 200);
    assert!(seen["headers"]["authorization"]
        .as_str()
        .unwrap()
        .starts_with("Bearer ey"));
    assert_eq!(on_b.userinfo().await["username"], "alice");

    // What Redis holds after real sign-ins: no token, uid, e-mail, phone or cookie in clear.
    let guest = a.guest().await;
    let mut secrets = a.tokens(&on_a).await;
    secrets.extend(a.tokens(&guest).await);
    let alice = a.user("alice").await;
    for field in ["sub", "uid", "email", "phone_number", "username"] {
        if let Some(v) = alice[field].as_str().filter(|v| v.len() >= 4) {
            secrets.push(v.to_string());
        }
    }
    secrets.push(on_a.session().unwrap());
    let dump = redis.dump();
    assert!(
        dump.len() >= 3,
        "sessions and their index are in Redis: {}",
        dump.len()
    );
    for (key, value) in &dump {
        assert!(key.starts_with("cbgw:"), "{key}");
        for s in &secrets {
            let probe = &s[..s.len().min(24)];
            assert!(
                !key.contains(probe) && !value.contains(probe),
                "{key} holds a secret"
            );
        }
        assert!(!value.contains("eyJ") && !value.contains("alice"), "{key}");
    }

    // Sign out on A: B refuses the cookie on its next request.
    let page = on_a.get("/__auth/sign_out").await;
    assert_eq!(page.status, 200);
    let out = on_a.post("/__auth/sign_out", &[("rd", "/")]).await;
    assert_eq!(out.status, 302, "{}", out.body);
    // B may hold the record in its near cache until A's invalidation reaches it (the bench
    // measures that: well under a millisecond), and never past the cache's half second by its
    // own clock. Moving B's clock past it makes B's next request the proof of the bound.
    b.clock.advance(Duration::from_millis(600));
    let (st, _) = api(&on_b, "/dash").await;
    assert_eq!(st, 401, "signed out on A, refused on B");
}

#[actix_web::test]
async fn one_refresh_across_replicas_for_a_hundred_requests() {
    let redis = redis_servers::standalone();
    let a = start(&redis_config(&redis, "")).await;
    let b = a.replica();
    let on_a = a.signed_in("alice", "alice-pass-1").await;
    let on_b = on_a.on(&b.url);
    // 7200 s tokens: 100 s before expiry is inside the 300 s margin, on both replicas.
    a.clock.advance(Duration::from_secs(7100));
    b.clock.advance(Duration::from_secs(7100));
    assert_eq!(a.env.delete("/__emulator/requests").await, 200);
    let calls = (0..100).map(|i| {
        let br = if i % 2 == 0 { &on_a } else { &on_b };
        async move { br.upstream(&format!("/x/{i}")).await }
    });
    let results = futures_util::future::join_all(calls).await;
    let mut bearers = std::collections::HashSet::new();
    for (st, seen) in &results {
        assert_eq!(*st, 200);
        bearers.insert(
            seen["headers"]["authorization"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(
        a.calls("/auth/v1/token").await,
        1,
        "one POST /auth/v1/token"
    );
    assert_eq!(bearers.len(), 1, "every request used the refreshed token");
}

#[actix_web::test]
async fn sessions_survive_a_restart() {
    let redis = redis_servers::standalone();
    let a = start(&redis_config(&redis, "")).await;
    let br = a.signed_in("alice", "alice-pass-1").await;
    a.handle.stop(true).await;
    // The same configuration, a new process state: only Redis remembers.
    let again = a.replica();
    let (st, seen) = br.on(&again.url).upstream("/dash").await;
    assert_eq!(st, 200);
    assert!(seen["headers"]["authorization"]
        .as_str()
        .unwrap()
        .starts_with("Bearer ey"));
}

/// Set when anything in this test process panics (a handler's panic becomes a 500 that a
/// status check alone could miss if it raced).
static PANICKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn watch_for_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, std::sync::atomic::Ordering::SeqCst);
        default(info);
    }));
}

#[actix_web::test]
async fn redis_paused_killed_and_restarted_empty() {
    watch_for_panics();
    let mut redis = redis_servers::standalone();
    let routes = "[[routes]]\npath = \"/pub\"\npolicy = \"public\"\n";
    let a = start(&redis_config(&redis, routes)).await;
    let br = a.signed_in("alice", "alice-pass-1").await;
    let cookie = br.session().unwrap();
    assert_eq!(api(&br, "/dash").await.0, 200);

    // Paused: protected requests get 503 (JSON for API callers, a page for navigations),
    // the cookie stays, public routes and /ping are served, /ready says 503.
    redis.servers[0].signal("-STOP");
    // Past the near cache's half second (by the gateway's clock), so Redis is asked.
    a.clock.advance(Duration::from_secs(1));
    let (st, cookies) = api(&br, "/dash").await;
    assert_eq!(st, 503);
    assert!(
        cookies.iter().all(|c| !c.contains("Max-Age=0")),
        "{cookies:?}"
    );
    let page = br.get("/dash").await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.has("<html") || page.has("<!doctype") || page.has("<!DOCTYPE"));
    assert_eq!(
        br.session().as_deref(),
        Some(cookie.as_str()),
        "cookie not cleared"
    );
    assert_eq!(
        br.get("/pub/x").await.status,
        200,
        "public routes keep working"
    );
    assert_eq!(status(&format!("{}/ping", a.url)).await, 200);
    assert_eq!(status(&format!("{}/ready", a.url)).await, 503);
    let login = br.password_sign_in("bob", "bob-pass-1", "/").await;
    assert_eq!(
        login.status, 503,
        "a sign-in that cannot be stored: {}",
        login.body
    );

    // Back: the same cookie works with no new sign-in.
    redis.servers[0].signal("-CONT");
    assert!(soon(&br, "/dash", 200).await, "the same cookie works again");
    assert_eq!(status(&format!("{}/ready", a.url)).await, 200);

    // Killed: 503 while down; restarted empty: the user signs in again, nothing else breaks.
    redis.servers[0].kill();
    // Past the near cache's half second again: the record just read could still be served.
    a.clock.advance(Duration::from_secs(1));
    assert_eq!(api(&br, "/dash").await.0, 503);
    redis_servers::restart_empty(&mut redis, 0);
    assert!(
        soon(&br, "/dash", 401).await,
        "an emptied store means signing in again"
    );
    let again = a.signed_in("alice", "alice-pass-1").await;
    assert_eq!(api(&again, "/dash").await.0, 200);
    assert!(
        !PANICKED.load(std::sync::atomic::Ordering::SeqCst),
        "nothing panicked"
    );
}

#[actix_web::test]
async fn sentinel_failover_keeps_sessions_and_flows() {
    let s = redis_servers::sentinel();
    let a = start(&redis_config(&s.topology, "")).await;
    let br = a.signed_in("alice", "alice-pass-1").await;
    let coder = a.browser();
    let sent = send_code(&coder, "email", "email", "carol@example.com", "/carol").await;
    assert_eq!(sent.status, 302, "{}", sent.body);
    let flow = harness::flow_of(&sent.location);
    // Let the replica catch up before the failover (replication is asynchronous).
    std::thread::sleep(Duration::from_millis(300));
    s.failover();
    assert!(
        soon(&br, "/dash", 200).await,
        "the session continues on the new master"
    );
    // The code sent before the failover is entered after it: the flow continues too.
    let code = a.env.code_for("carol@example.com").await;
    let done = coder
        .post(
            "/__auth/code",
            &[("flow", &flow), ("code", &code), ("rd", "/carol")],
        )
        .await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/carol");
    // A write after the failover lands on the new master.
    let b2 = a.signed_in("bob", "bob-pass-1").await;
    assert_eq!(api(&b2, "/dash").await.0, 200);
}

#[actix_web::test]
async fn the_start_up_log_names_the_store_without_credentials() {
    let redis = redis_servers::acl();
    let a = start(&redis_config(&redis, "")).await;
    let br = a.signed_in("alice", "alice-pass-1").await;
    assert_eq!(api(&br, "/dash").await.0, 200);
    let logs = String::from_utf8_lossy(&harness::logs().lock().unwrap()).into_owned();
    let port = redis.servers[0].port;
    assert!(
        logs.contains("session store: redis")
            && logs.contains(&format!("standalone redis://127.0.0.1:{port} db 0")),
        "the store and where it is are logged"
    );
    let mut secrets = vec!["s3cret-redis-pass".to_string()];
    secrets.extend(a.tokens(&br).await);
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    harness::assert_logs_clean(&refs);
    // Every operation is counted by name.
    let metrics = a.gateway.metrics.render(0);
    assert!(
        metrics.contains("cloudbase_gateway_store_duration_seconds_count{op=\"session_get\"}"),
        "{metrics}"
    );
}

// ----- real `serve` processes -----

const BIN: &str = env!("CARGO_BIN_EXE_cloudbase-gateway");

/// A `cloudbase-gateway serve` process, killed when dropped.
struct Serve {
    child: std::process::Child,
    url: String,
    port: u16,
    _config: tempfile::NamedTempFile,
}

/// Two `serve` processes with one configuration (one emulator, one upstream, `redis`), as
/// behind a load balancer: A's address is the public one.
struct Processes {
    env: common::Env,
    text: String,
    a: Serve,
    b: Serve,
}

async fn processes(redis: &redis_servers::Topology, extra: &str) -> Processes {
    let mut opts = cloudbase_gateway::emulator::EmulatorOptions::new("test-env");
    opts.users = common::default_users();
    let env = common::start_with(opts, Duration::from_secs(2));
    let upstream = harness::spawn_upstream();
    let (port_a, port_b) = (redis_servers::free_port(), redis_servers::free_port());
    let text = format!(
        "env_id = \"test-env\"\npublic_url = \"http://127.0.0.1:{port_a}\"\ninsecure_cookie = true\napi_origin = \"{}\"\nupstream = \"{upstream}\"\ncloudbase_timeout = \"2s\"\nsign_in_methods = [\"password\", \"email_code\"]\n{}",
        env.emu.url,
        redis_config(redis, extra)
    );
    let a = serve(&text, port_a).await;
    let b = serve(&text, port_b).await;
    Processes { env, text, a, b }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve` on `port` with `text` and waits (bounded) until `/ping` answers.
async fn serve(text: &str, port: u16) -> Serve {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(
        &mut f,
        format!("listen = \"127.0.0.1:{port}\"\nlog_level = \"warn\"\n{text}").as_bytes(),
    )
    .unwrap();
    let child = std::process::Command::new(BIN)
        .env_clear()
        .args(["serve", "--config", f.path().to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(f.path().with_extension("log")).unwrap())
        .spawn()
        .unwrap();
    // Killed and reaped when dropped, whatever happens below.
    let serve = Serve {
        child,
        url: format!("http://127.0.0.1:{port}"),
        port,
        _config: f,
    };
    let client = awc::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{}/ping", serve.url)).send().await {
            if r.status() == 200 {
                return serve;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let log =
        std::fs::read_to_string(serve._config.path().with_extension("log")).unwrap_or_default();
    panic!("serve did not start on {port}: {log}");
}

#[actix_web::test]
async fn two_serve_processes_share_one_redis_and_survive_a_restart() {
    let redis = redis_servers::standalone();
    let p = processes(&redis, "").await;
    let (a, b) = (&p.a, p.b);
    let on_a = harness::browser(&a.url);
    let page = on_a.password_sign_in("alice", "alice-pass-1", "/").await;
    assert_eq!(page.status, 302, "{}", page.body);
    let on_b = on_a.on(&b.url);
    let (st, seen) = on_b.upstream("/dash").await;
    assert_eq!(st, 200, "a cookie from process A works on process B");
    assert!(seen["headers"]["authorization"]
        .as_str()
        .unwrap()
        .starts_with("Bearer ey"));

    // B restarted with the same configuration: the cookie from before still works.
    let port_b = b.port;
    drop(b);
    let _restarted = serve(&p.text, port_b).await;
    assert_eq!(on_b.upstream("/dash").await.0, 200, "kept across a restart");

    // Signed out on A: B refuses the cookie on its next request.
    assert_eq!(on_a.get("/__auth/sign_out").await.status, 200);
    assert_eq!(
        on_a.post("/__auth/sign_out", &[("rd", "/")]).await.status,
        302
    );
    // A separate process's clock cannot be moved: B refuses once A's invalidation arrives
    // (or its near cache's half second ends).
    assert!(
        soon(&on_b, "/dash", 401).await,
        "signed out on A, refused by B"
    );
}

#[actix_web::test]
async fn flows_started_in_one_serve_process_finish_in_the_other() {
    let redis = redis_servers::cluster();
    let p = processes(&redis, "").await;
    let (a, b) = (&p.a, &p.b);

    // A code sent on A, entered on B.
    let br = harness::browser(&a.url);
    let sent = send_code(&br, "email", "email", "bob@example.com", "/after").await;
    assert_eq!(sent.status, 302, "{}", sent.body);
    let flow = harness::flow_of(&sent.location);
    let code = p.env.code_for("bob@example.com").await;
    let on_b = br.on(&b.url);
    let done = on_b
        .post(
            "/__auth/code",
            &[("flow", &flow), ("code", &code), ("rd", "/after")],
        )
        .await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/after");
    assert!(on_b.session().is_some());
    // A second code to the same address on B within the window: the shared limit says 429.
    let other = harness::browser(&a.url).on(&b.url);
    let again = send_code(&other, "email", "email", "bob@example.com", "/").await;
    assert_eq!(again.status, 429, "{}", again.body);

    // A provider sign-in started on A, its callback on B.
    let br = harness::browser(&a.url);
    let start = br.get("/__auth/start?provider=github&rd=%2Fgh").await;
    assert_eq!(start.status, 302, "{}", start.body);
    let back = consent(&br, &start.location, "approve").await;
    let callback = back.location.replace(&a.url, &b.url);
    assert!(callback.starts_with(&b.url), "{callback}");
    let on_b = br.on(&b.url);
    let done = on_b.get(&callback).await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/gh");

    // Two racing callbacks with the same state on A and B: one wins.
    let br = harness::browser(&a.url);
    let start = br.get("/__auth/start?provider=github&rd=%2Frace").await;
    let back = consent(&br, &start.location, "approve").await;
    assert!(query(&back.location).contains_key("state"));
    let on_b = br.on(&b.url);
    let on_b_url = back.location.replace(&a.url, &b.url);
    let (x, y) = futures_util::join!(br.get(&back.location), on_b.get(&on_b_url));
    let wins = [&x, &y].iter().filter(|p| p.status == 302).count();
    let used = [&x, &y].iter().filter(|p| p.status == 400).count();
    assert_eq!((wins, used), (1, 1), "{} {}", x.status, y.status);
}

#[actix_web::test]
async fn a_captcha_started_in_one_serve_process_returns_to_the_other() {
    let redis = redis_servers::standalone();
    let p = processes(&redis, "captcha_mode = \"redirect\"\n").await;
    let (a, b) = (&p.a, &p.b);
    p.env
        .settings(serde_json::json!({"captcha_required": true}))
        .await;
    let br = harness::browser(&a.url);
    let page = br.password_sign_in("alice", "alice-pass-1", "/after").await;
    assert_eq!(page.status, 302, "{}", page.body);
    assert!(
        page.location.contains("/__emulator/captcha?id="),
        "{}",
        page.location
    );
    let shown = br.get(&page.location).await;
    assert_eq!(shown.status, 200);
    let id = query(&page.location)["id"].clone();
    let base = page.location.split('?').next().unwrap().to_string();
    let back = br
        .post_raw(&base, &[("id", id.as_str()), ("decision", "pass")])
        .await;
    assert!(
        back.location.contains("/__auth/captcha/callback?"),
        "{}",
        back.location
    );
    // The callback lands on B, which resumes the sign-in A started.
    let on_b = br.on(&b.url);
    let done = on_b.get(&back.location.replace(&a.url, &b.url)).await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/after");
    assert!(on_b.session().is_some());
    // The solved token is shared: a code sent through A tries it first, no second captcha.
    let again = on_b.on(&a.url);
    let sent = send_code(&again, "email", "email", "bob@example.com", "/").await;
    assert_eq!(sent.status, 302, "{}", sent.body);
    assert!(
        sent.location.starts_with("/__auth/code?flow="),
        "{}",
        sent.location
    );
    assert_eq!(
        p.env.requests_to("/auth/v1/captcha/init").await.len(),
        1,
        "no second captcha"
    );
}
