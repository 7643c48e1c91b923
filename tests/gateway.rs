//! The gateway's request path over real HTTP: the emulator, a whoami upstream and the gateway
//! on ephemeral ports; assertions on what the client got, what the upstream saw and what the
//! emulator received.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use awc::ws;
use cloudbase_gateway::clock::OffsetClock;
use cloudbase_gateway::entropy::OsEntropy;
use cloudbase_gateway::server::{self, Deps};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

struct Gw {
    env: common::Env,
    _closed: socket2::Socket,
    url: String,
    metrics_url: String,
    clock: Arc<OffsetClock>,
    http: awc::Client,
}

fn spawn_upstream() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    actix_web::rt::spawn(cloudbase_gateway::demo::whoami_server(l).unwrap());
    url
}

/// An upstream that answers /slow after 60 s, /status/N with status N, and a websocket echo
/// at /ws/echo.
fn spawn_special_upstream() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let server = HttpServer::new(|| {
        App::new()
            .route(
                "/slow",
                web::get().to(|| async {
                    actix_web::rt::time::sleep(Duration::from_secs(60)).await;
                    HttpResponse::Ok().body("late")
                }),
            )
            .route(
                "/status/{code}",
                web::route().to(|path: web::Path<u16>| async move {
                    let status = actix_web::http::StatusCode::from_u16(path.into_inner()).unwrap();
                    HttpResponse::build(status)
                        .insert_header(("etag", "\"v1\""))
                        .insert_header(("set-cookie", "cbgw_session=planted; Path=/"))
                        .insert_header(("set-cookie", "app_pref=dark; Path=/"))
                        .finish()
                }),
            )
            .route(
                "/ws/echo",
                web::get().to(
                    |req: actix_web::HttpRequest, body: web::Payload| async move {
                        let (resp, mut session, mut msgs) = actix_ws::handle(&req, body)?;
                        let auth = req
                            .headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap_or("").to_string())
                            .unwrap_or_default();
                        actix_web::rt::spawn(async move {
                            while let Some(Ok(m)) = msgs.recv().await {
                                match m {
                                    actix_ws::Message::Text(t) => {
                                        let reply =
                                            format!("{t}|{}", auth.starts_with("Bearer ey"));
                                        if session.text(reply).await.is_err() {
                                            break;
                                        }
                                    }
                                    actix_ws::Message::Close(r) => {
                                        let _ = session.close(r).await;
                                        break;
                                    }
                                    _ => {}
                                }
                            }
                        });
                        Ok::<_, actix_web::Error>(resp)
                    },
                ),
            )
    })
    .workers(1)
    .disable_signals()
    .listen(l)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    url
}

/// A port that refuses connections for as long as the returned socket lives: bound (so no
/// other test can take it) but not listening.
fn closed_port() -> (String, socket2::Socket) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    (format!("http://{addr}"), s)
}

/// A gateway in front of a whoami upstream. `extra` is appended to its TOML file.
async fn start(extra: &str) -> Gw {
    let env = common::start();
    let upstream = spawn_upstream();
    let special = spawn_special_upstream();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_url = format!("http://{}", metrics.local_addr().unwrap());
    let (down, closed) = closed_port();
    let text = format!(
        "env_id = \"test-env\"\npublic_url = \"http://{addr}\"\napi_origin = \"{}\"\nupstream = \"{upstream}\"\ninsecure_cookie = true\ncloudbase_timeout = \"2s\"\nupstream_timeout = \"4s\"\n{extra}\n[[routes]]\npath = \"/special\"\nupstream = \"{special}\"\n[[routes]]\npath = \"/down\"\nupstream = \"{}\"\n",
        env.emu.url, down
    );
    // The special upstream's paths are /slow and /ws/echo; reach them through a route prefix by
    // giving the route the upstream's root and the path as is.
    let text = text.replace(
        &format!("path = \"/special\"\nupstream = \"{special}\""),
        &format!("path = \"/slow\"\nupstream = \"{special}\"\n[[routes]]\npath = \"/status\"\nupstream = \"{special}\"\n[[routes]]\npath = \"/ws\"\nupstream = \"{special}\""),
    );
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    let cfg = cloudbase_gateway::config::load(Some(f.path()), Vec::<(String, String)>::new(), [])
        .unwrap_or_else(|e| panic!("{e}"));
    let clock = Arc::new(OffsetClock::default());
    let running = server::build_with(
        cfg,
        listener,
        Some(metrics),
        Deps {
            clock: clock.clone(),
            entropy: Arc::new(OsEntropy),
            workers: 2,
        },
    )
    .unwrap();
    actix_web::rt::spawn(running.server);
    actix_web::rt::spawn(running.metrics.unwrap());
    let http = awc::Client::builder()
        .disable_redirects()
        .timeout(Duration::from_secs(10))
        .finish();
    Gw {
        env,
        _closed: closed,
        url: format!("http://{addr}"),
        metrics_url,
        clock,
        http,
    }
}

const SESSION: &str = "cbgw_session";
const CSRF: &str = "cbgw_session_csrf";

fn set_cookie(resp: &awc::ClientResponse<impl Sized>, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

/// A CSRF cookie value and the form token for it, from a gateway page at `path`.
async fn csrf_for(gw: &Gw, path: &str) -> (String, String) {
    let mut resp = gw
        .http
        .get(format!("{}{path}", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let csrf = cookie_value(&set_cookie(&resp, CSRF).expect("csrf cookie"));
    let html = String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap();
    let token = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    (csrf, token)
}

impl Gw {
    /// Signs in with a password; returns the session cookie value.
    async fn sign_in(&self, user: &str, password: &str) -> String {
        let (csrf, token) = csrf_for(self, "/__auth/").await;
        let resp = self
            .http
            .post(format!("{}/__auth/sign_in/password", self.url))
            .insert_header(("cookie", format!("{CSRF}={csrf}")))
            .send_form(&[
                ("csrf", token.as_str()),
                ("rd", "/after"),
                ("username", user),
                ("password", password),
            ])
            .await
            .unwrap();
        assert_eq!(resp.status(), 302);
        assert_eq!(resp.headers().get("location").unwrap(), "/after");
        cookie_value(&set_cookie(&resp, SESSION).expect("session cookie"))
    }

    /// GET `path` as an API call with the session cookie; status and JSON (or Null).
    async fn api(&self, path: &str, session: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .get(format!("{}{path}", self.url))
            .insert_header(("accept", "application/json"));
        if let Some(s) = session {
            req = req.insert_header(("cookie", format!("{SESSION}={s}")));
        }
        let mut resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.body().await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// A browser navigation to `path` (Fetch metadata says so; the whoami upstream answers
    /// JSON because the Accept header also lists it).
    async fn navigate(
        &self,
        path: &str,
        session: Option<&str>,
    ) -> awc::ClientResponse<
        impl futures_util::Stream<Item = Result<web::Bytes, awc::error::PayloadError>>,
    > {
        let mut req = self
            .http
            .get(format!("{}{path}", self.url))
            .insert_header(("sec-fetch-mode", "navigate"))
            .insert_header(("accept", "text/html, application/json;q=0.9"));
        if let Some(s) = session {
            req = req.insert_header(("cookie", format!("{SESSION}={s}")));
        }
        req.send().await.unwrap()
    }

    /// How many calls to `path` the emulator has received.
    async fn calls(&self, path: &str) -> usize {
        self.env.requests_to(path).await.len()
    }

    /// The metrics listener's text.
    async fn metrics(&self) -> String {
        let body = self
            .http
            .get(format!("{}/metrics", self.metrics_url))
            .send()
            .await
            .unwrap()
            .body()
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    async fn fault(&self, fault: Value) {
        let (status, _) = self.env.post_json("/__emulator/faults", fault).await;
        assert_eq!(status, 200);
    }
}

#[actix_web::test]
async fn cookie_carries_every_attribute_and_bad_cookies_are_refused() {
    let gw = start("").await;
    let (csrf, token) = csrf_for(&gw, "/__auth/").await;
    let resp = gw
        .http
        .post(format!("{}/__auth/sign_in/password", gw.url))
        .insert_header(("cookie", format!("{CSRF}={csrf}")))
        .send_form(&[
            ("csrf", token.as_str()),
            ("username", "alice"),
            ("password", "alice-pass-1"),
        ])
        .await
        .unwrap();
    let c = set_cookie(&resp, SESSION).unwrap();
    for part in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=2592000"] {
        assert!(c.contains(part), "{part} missing in {c}");
    }
    let good = cookie_value(&c);
    assert_eq!(gw.api("/x", Some(&good)).await.0, 200);

    // A second sign-in gets a new handle (no fixation).
    let again = gw.sign_in("alice", "alice-pass-1").await;
    assert_ne!(again, good);

    let mut tampered = good.clone().into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let forged = format!("{}.{}", "A".repeat(43), "B".repeat(43));
    for bad in [tampered.as_str(), forged.as_str(), "garbage", "", "%00%ff"] {
        let (status, body) = gw.api("/x", Some(bad)).await;
        assert_eq!(status, 401, "{bad}");
        assert_eq!(body["error"], "unauthenticated");
    }

    // Expired: the session outlives neither its refresh token nor the store's TTL.
    gw.clock.advance(Duration::from_secs(31 * 24 * 3600));
    assert_eq!(gw.api("/x", Some(&again)).await.0, 401);
}

#[actix_web::test]
async fn secure_cookies_take_host_or_secure_prefix() {
    // The prefix rules are unit-tested in session::cookie; here a secure gateway with a
    // cookie domain (SSO) issues __Secure- cookies with Secure and Domain, even over http.
    let env = common::start();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = cloudbase_gateway::config::load(
        None,
        Vec::<(String, String)>::new(),
        [
            ("env_id", "test-env".to_string()),
            ("public_url", "https://app.example.com".to_string()),
            ("api_origin", env.emu.url.clone()),
            ("upstream", spawn_upstream()),
            ("cookie_domain", "example.com".to_string()),
        ],
    )
    .unwrap();
    let running = server::build_with(cfg, listener, None, Deps::default()).unwrap();
    actix_web::rt::spawn(running.server);
    let http = awc::Client::builder().disable_redirects().finish();
    let mut page = http
        .get(format!("http://{addr}/__auth/"))
        .insert_header(("host", "app.example.com"))
        .send()
        .await
        .unwrap();
    let csrf_cookie = page
        .headers()
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("__Host-cbgw_session_csrf="))
        .unwrap()
        .to_string();
    let html = String::from_utf8(page.body().await.unwrap().to_vec()).unwrap();
    let token = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let resp = http
        .post(format!("http://{addr}/__auth/sign_in/password"))
        .insert_header(("host", "app.example.com"))
        .insert_header(("cookie", csrf_cookie.split(';').next().unwrap().to_string()))
        .send_form(&[
            ("csrf", token),
            ("username", "alice"),
            ("password", "alice-pass-1"),
        ])
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let c = resp
        .headers()
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("__Secure-cbgw_session="))
        .expect("__Secure- session cookie")
        .to_string();
    for part in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=2592000",
        "Domain=example.com",
    ] {
        assert!(c.contains(part), "{part} missing in {c}");
    }
}

#[actix_web::test]
async fn bearer_is_injected_and_spoofed_identity_is_stripped() {
    let gw = start("").await;
    let s = gw.sign_in("alice", "alice-pass-1").await;
    let mut resp = gw
        .http
        .get(format!("{}/api/data?x=1", gw.url))
        .insert_header(("accept", "application/json"))
        .insert_header((
            "cookie",
            format!("other=1; {SESSION}={s}; {CSRF}=abc; last=2"),
        ))
        .insert_header(("authorization", "Basic c3Bvb2Y6c3Bvb2Y="))
        .insert_header(("X-Forwarded-User", "admin"))
        .insert_header(("x_forwarded_user", "admin"))
        .insert_header(("X_FORWARDED_EMAIL", "ceo@example.com"))
        .insert_header(("x-Forwarded_Groups", "admin"))
        .insert_header(("X-Auth-Request-User", "admin"))
        .insert_header(("x_cloudbase_scope", "admin"))
        .insert_header(("X-Forwarded-Preferred-Username", "root"))
        .insert_header(("X-Forwarded-For", "6.6.6.6"))
        .insert_header(("X-Forwarded-Proto", "https"))
        .insert_header(("X-Forwarded-Host", "evil.example"))
        .insert_header(("X-Forwarded-Access-Token", "forged"))
        .insert_header(("Forwarded", "for=6.6.6.6;proto=https"))
        .insert_header(("X-Real-IP", "6.6.6.6"))
        .insert_header(("X-Request-Id", "trace-123"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("x-request-id").unwrap(), "trace-123");
    let seen: Value = resp.json().await.unwrap();
    let h = &seen["headers"];
    assert_eq!(seen["path"], "/api/data");
    assert_eq!(seen["query"], "x=1");
    let auth = h["authorization"].as_str().unwrap();
    assert!(auth.starts_with("Bearer ey"), "{auth}");
    let users = gw.env.get_json("/__emulator/users").await;
    let alice = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "alice")
        .unwrap();
    assert_eq!(h["x-forwarded-user"], alice["uid"]);
    assert_eq!(h["x-forwarded-email"], "alice@example.com");
    assert_eq!(h["x-forwarded-preferred-username"], "alice");
    assert_eq!(h["x-forwarded-groups"], "staff");
    assert_eq!(h["x-cloudbase-scope"], "user");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(
        h["x-forwarded-proto"], "http",
        "from public_url, not the client"
    );
    for gone in ["forwarded", "x-real-ip", "x-forwarded-access-token"] {
        assert!(h.get(gone).is_none(), "{gone} reached the upstream");
    }
    assert_eq!(h["x-request-id"], "trace-123");
    assert_eq!(h["cookie"], "other=1; last=2");
    let authority = gw.url.strip_prefix("http://").unwrap();
    assert_eq!(h["x-forwarded-host"], authority);
    assert_ne!(
        h["host"], authority,
        "the upstream gets its own Host by default"
    );
    for key in h.as_object().unwrap().keys() {
        assert!(!key.contains('_'), "{key} reached the upstream");
        assert!(
            !key.starts_with("x-auth-request"),
            "{key} reached the upstream"
        );
    }
}

#[actix_web::test]
async fn whoami_page_shows_the_user_with_tokens_shortened() {
    let gw = start("").await;
    let s = gw.sign_in("alice", "alice-pass-1").await;
    let (_, seen) = gw.api("/me", Some(&s)).await;
    let bearer = seen["headers"]["authorization"]
        .as_str()
        .unwrap()
        .to_string();
    let mut resp = gw
        .http
        .get(format!("{}/me", gw.url))
        .insert_header(("accept", "text/html"))
        .insert_header(("cookie", format!("{SESSION}={s}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let html = String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap();
    assert!(html.contains("Signed in as alice"), "{html}");
    assert!(html.contains("x-forwarded-email"), "{html}");
    assert!(html.contains("characters)"), "{html}");
    assert!(!html.contains(&bearer[7..]), "the token is shortened");
}

#[actix_web::test]
async fn other_route_hosts_sign_in_through_the_public_url_and_come_back() {
    let gw = start("[[routes]]\nhost = \"tools.localtest\"\npath = \"/\"\n").await;
    let resp = gw
        .http
        .get(format!("{}/board?x=1", gw.url))
        .insert_header(("host", "tools.localtest:8443"))
        .insert_header(("sec-fetch-mode", "navigate"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers().get("location").unwrap().to_str().unwrap(),
        format!(
            "{}/__auth/?rd=http%3A%2F%2Ftools.localtest%3A8443%2Fboard%3Fx%3D1",
            gw.url
        )
    );
    let (csrf, token) = csrf_for(&gw, "/__auth/").await;
    let resp = gw
        .http
        .post(format!("{}/__auth/sign_in/password", gw.url))
        .insert_header(("cookie", format!("{CSRF}={csrf}")))
        .send_form(&[
            ("csrf", token.as_str()),
            ("rd", "http://tools.localtest:8443/board?x=1"),
            ("username", "alice"),
            ("password", "alice-pass-1"),
        ])
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers().get("location").unwrap(),
        "http://tools.localtest:8443/board?x=1",
        "a host the gateway serves is a valid return URL"
    );
}

#[actix_web::test]
async fn pass_host_header_sends_the_browsers_host() {
    let gw = start("pass_host_header = true\n").await;
    let s = gw.sign_in("alice", "alice-pass-1").await;
    let (status, seen) = gw.api("/x", Some(&s)).await;
    assert_eq!(status, 200);
    assert_eq!(
        seen["headers"]["host"],
        gw.url.strip_prefix("http://").unwrap()
    );
}

#[actix_web::test]
async fn navigations_are_redirected_and_api_calls_get_401() {
    let gw = start("").await;
    for headers in [
        vec![("sec-fetch-mode", "navigate")],
        vec![("accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
    ] {
        let mut req = gw.http.get(format!("{}/reports/q1?year=2026", gw.url));
        for h in headers {
            req = req.insert_header(h);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 302);
        assert_eq!(
            resp.headers().get("location").unwrap(),
            "/__auth/?rd=%2Freports%2Fq1%3Fyear%3D2026"
        );
    }
    for headers in [
        vec![("sec-fetch-mode", "cors"), ("accept", "text/html")],
        vec![("accept", "*/*")],
        vec![
            ("x-requested-with", "XMLHttpRequest"),
            ("accept", "text/html"),
        ],
    ] {
        let mut req = gw.http.get(format!("{}/reports/q1", gw.url));
        for h in headers {
            req = req.insert_header(h);
        }
        let mut resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers().get("www-authenticate").unwrap(), "Bearer");
        assert!(resp.headers().get("location").is_none());
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "unauthenticated");
    }
}

const POLICY_ROUTES: &str = r#"
[[routes]]
path = "/public"
policy = "public"
[[routes]]
path = "/admin"
groups = ["admin"]
[[routes]]
path = "/members"
policy = "registered"
[[routes]]
path = "/shop"
anonymous_auto_sign_in = true
"#;

#[actix_web::test]
async fn policies_hold_against_bypass_attempts() {
    let gw = start(POLICY_ROUTES).await;
    let alice = gw.sign_in("alice", "alice-pass-1").await;
    for path in [
        "/admin",
        "/admin/",
        "/admin/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin/x",
        "//admin",
        "/admin;x=1",
        "/public/..;/admin",
        "/public%2f..%2fadmin",
        "/public%2F..%2Fadmin",
        "/./admin",
        "/public/../admin",
        // Regression (review of the first version): the policy was checked on the normalised
        // path only, so an upstream that does not decode %2F saw /admin/… unprotected.
        "/admin/x%2F..%2F..%2Fpublic",
        "/admin/..;/public",
        "/admin/%2e%2e/public",
    ] {
        let (status, body) = gw.api(path, Some(&alice)).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["error"], "forbidden");
        // Not signed in, the same paths need a session: never the public route.
        assert_eq!(gw.api(path, None).await.0, 401, "{path} without a session");
    }
    let mut page = gw.navigate("/admin", Some(&alice)).await;
    assert_eq!(page.status(), 403);
    let html = String::from_utf8(page.body().await.unwrap().to_vec()).unwrap();
    assert!(html.contains("Access denied"), "{html}");
    let (status, seen) = gw.api("/public?x=/admin", None).await;
    assert_eq!(status, 200);
    assert_eq!(seen["path"], "/public");
    assert!(seen["headers"].get("authorization").is_none());
    assert_eq!(gw.api("/public/page", None).await.0, 200);
    assert_eq!(gw.api("/members/x", Some(&alice)).await.0, 200);

    // Anonymous auto sign-in: the shop gives a visitor a session; members-only refuses it.    // A script without a cookie gets no automatic session (and mints no CloudBase user).
    assert_eq!(gw.api("/shop/cart", None).await.0, 401);
    assert!(gw
        .env
        .requests_to("/auth/v1/signin/anonymously")
        .await
        .is_empty());
    let mut resp = gw.navigate("/shop/cart", None).await;
    assert_eq!(resp.status(), 200);
    let anon = cookie_value(&set_cookie(&resp, SESSION).expect("anonymous session cookie"));
    let seen: Value = resp.json().await.unwrap();
    assert_eq!(seen["headers"]["x-cloudbase-scope"], "anonymous");
    assert!(seen["headers"]["authorization"]
        .as_str()
        .unwrap()
        .starts_with("Bearer ey"));
    assert_eq!(gw.calls("/auth/v1/signin/anonymously").await, 1);
    assert_eq!(gw.api("/shop/cart", Some(&anon)).await.0, 200);
    assert_eq!(gw.api("/anything", Some(&anon)).await.0, 200);
    assert_eq!(gw.api("/members", Some(&anon)).await.0, 403);
    assert_eq!(gw.api("/admin", Some(&anon)).await.0, 403);
    assert_eq!(gw.calls("/auth/v1/signin/anonymously").await, 1);
}

#[actix_web::test]
async fn group_members_pass_group_routes() {
    // The default test users carry "staff"; a route for staff passes them.
    let gw = start("[[routes]]\npath = \"/staff\"\ngroups = [\"staff\", \"ops\"]\n").await;
    let alice = gw.sign_in("alice", "alice-pass-1").await;
    let (status, seen) = gw.api("/staff/board", Some(&alice)).await;
    assert_eq!(status, 200);
    assert_eq!(seen["headers"]["x-forwarded-groups"], "staff");
}

#[actix_web::test]
async fn automatic_anonymous_sign_in_switched_off_asks_for_sign_in() {
    let gw = start(POLICY_ROUTES).await;
    gw.env.settings(json!({"anonymous_enabled": false})).await;
    let resp = gw.navigate("/shop", None).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers().get("location").unwrap(),
        "/__auth/?rd=%2Fshop"
    );
    assert!(set_cookie(&resp, SESSION).is_none());
    assert_eq!(gw.calls("/auth/v1/signin/anonymously").await, 1);
}

#[actix_web::test]
async fn one_refresh_for_a_hundred_concurrent_requests() {
    let gw = start("").await;
    let s = gw.sign_in("alice", "alice-pass-1").await;
    let (_, before) = gw.api("/x", Some(&s)).await;
    let old_bearer = before["headers"]["authorization"]
        .as_str()
        .unwrap()
        .to_string();
    // 7200 s tokens: 100 s before expiry is inside the 300 s margin.
    gw.clock.advance(Duration::from_secs(7100));
    assert_eq!(gw.env.delete("/__emulator/requests").await, 200);
    let calls = (0..100).map(|i| {
        let gw = &gw;
        let s = &s;
        async move { gw.api(&format!("/x/{i}"), Some(s)).await }
    });
    let results = futures_util::future::join_all(calls).await;
    let mut bearers = std::collections::HashSet::new();
    for (status, seen) in &results {
        assert_eq!(*status, 200);
        bearers.insert(
            seen["headers"]["authorization"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(gw.calls("/auth/v1/token").await, 1);
    assert_eq!(bearers.len(), 1, "every request used the refreshed token");
    // The refresh extended the session: the cookie's Max-Age was renewed, handle unchanged
    // (checked on a request after the storm, which sees no further refresh).
    gw.clock.advance(Duration::from_secs(7100));
    let resp = gw
        .http
        .get(format!("{}/again", gw.url))
        .insert_header(("accept", "application/json"))
        .insert_header(("cookie", format!("{SESSION}={s}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let renewed = set_cookie(&resp, SESSION).expect("renewed cookie");
    assert_eq!(cookie_value(&renewed), s);
    assert!(renewed.contains("Max-Age=2592000"), "{renewed}");
    assert_eq!(gw.calls("/auth/v1/token").await, 2);
    assert!(!bearers.contains(&old_bearer));
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("cloudbase_gateway_refreshes_total{outcome=\"ok\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cloudbase_gateway_active_sessions 1\n"),
        "{metrics}"
    );
    let proxied: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cloudbase_gateway_proxy_duration_seconds_count "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(proxied >= 102, "{proxied} proxied requests counted");
    assert!(
        metrics.contains("cloudbase_gateway_sign_ins_total{method=\"password\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("endpoint=\"/auth/v1/token\""), "{metrics}");
    // The main listener does not serve /metrics: there it is just a protected path.
    assert_eq!(gw.api("/metrics", None).await.0, 401);
    assert!(metrics.contains("route=\"/\",status=\"200\""), "{metrics}");
}

#[actix_web::test]
async fn invalid_grant_ends_the_session() {
    let gw = start("").await;
    let s = gw.sign_in("alice", "alice-pass-1").await;
    gw.fault(json!({"path": "/auth/v1/token", "error": "invalid_grant", "status": 400}))
        .await;
    gw.clock.advance(Duration::from_secs(7100));
    let resp = gw.navigate("/page", Some(&s)).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers().get("location").unwrap(),
        "/__auth/?rd=%2Fpage"
    );
    let cleared = set_cookie(&resp, SESSION).expect("cookie cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(gw.api("/page", Some(&s)).await.0, 401);
    assert_eq!(gw.calls("/auth/v1/token").await, 1);
}

#[actix_web::test]
async fn anonymous_sessions_sign_in_again_on_invalid_grant() {
    let gw = start(POLICY_ROUTES).await;
    let mut resp = gw.navigate("/shop", None).await;
    let anon = cookie_value(&set_cookie(&resp, SESSION).unwrap());
    let first: Value = resp.json().await.unwrap();
    gw.fault(json!({"path": "/auth/v1/token", "error": "invalid_grant", "status": 400}))
        .await;
    gw.clock.advance(Duration::from_secs(7100));
    let (status, again) = gw.api("/shop", Some(&anon)).await;
    assert_eq!(status, 200);
    assert_eq!(
        again["headers"]["x-forwarded-user"], first["headers"]["x-forwarded-user"],
        "same device id, same anonymous user"
    );
    let resign = gw.env.requests_to("/auth/v1/signin/anonymously").await;
    assert_eq!(resign.len(), 2);
    assert_eq!(resign[1]["headers"]["authorization"], "Basic");
    assert_eq!(
        resign[0]["headers"]["x-device-id"],
        resign[1]["headers"]["x-device-id"]
    );
}

#[actix_web::test]
async fn cloudbase_outage_keeps_valid_sessions_serving() {
    let gw = start("[[routes]]\npath = \"/open\"\npolicy = \"public\"\n").await;
    let s = gw.sign_in("alice", "alice-pass-1").await;
    gw.fault(
        json!({"path": "/auth/v1/token", "status": 503, "error": "unavailable", "times": 100}),
    )
    .await;
    gw.clock.advance(Duration::from_secs(7100));
    let (status, seen) = gw.api("/still", Some(&s)).await;
    assert_eq!(status, 200);
    assert!(seen["headers"]["authorization"]
        .as_str()
        .unwrap()
        .starts_with("Bearer ey"));
    // Past the token's expiry, with CloudBase still down: 503, and the session survives.
    gw.clock.advance(Duration::from_secs(200));
    let (status, body) = gw.api("/still", Some(&s)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "cloudbase_unavailable");
    let (status, seen) = gw.api("/open/page", Some(&s)).await;
    assert_eq!(status, 200, "public pages stay up");
    assert!(seen["headers"].get("authorization").is_none());
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("cloudbase_gateway_cloudbase_errors_total{endpoint=\"/auth/v1/token\",error=\"unavailable\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cloudbase_gateway_refreshes_total{outcome=\"unavailable\"}"),
        "{metrics}"
    );
    assert_eq!(gw.env.delete("/__emulator/faults").await, 200);
    gw.clock.advance(Duration::from_secs(60));
    assert_eq!(
        gw.api("/still", Some(&s)).await.0,
        200,
        "recovers once CloudBase is back"
    );
}

#[actix_web::test]
async fn a_rate_limited_refresh_keeps_the_session_and_cools_down() {
    let gw = start("").await;
    let s = gw.sign_in("alice", "alice-pass-1").await;
    gw.fault(json!({"path": "/auth/v1/token", "status": 429, "error": "resource_exhausted", "times": 100}))
        .await;
    gw.clock.advance(Duration::from_secs(7100));
    assert_eq!(gw.api("/a", Some(&s)).await.0, 200);
    assert_eq!(gw.api("/b", Some(&s)).await.0, 200);
    assert_eq!(
        gw.calls("/auth/v1/token").await,
        1,
        "the second request did not retry within the cool-down"
    );
    gw.clock.advance(Duration::from_secs(11));
    assert_eq!(gw.api("/c", Some(&s)).await.0, 200);
    assert_eq!(gw.calls("/auth/v1/token").await, 2);
}

#[actix_web::test]
async fn bodiless_answers_head_and_upstream_cookies() {
    let gw = start("").await;
    let s = gw.sign_in("alice", "alice-pass-1").await;
    for (method, code) in [("GET", 204), ("GET", 304), ("HEAD", 200), ("GET", 200)] {
        // Two requests on one keep-alive connection: bad framing of the first breaks the second.
        let addr = gw.url.strip_prefix("http://").unwrap();
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let req = format!(
            "{method} /status/{code} HTTP/1.1\r\nHost: {addr}\r\nCookie: {SESSION}={s}\r\n\r\nGET /status/201 HTTP/1.1\r\nHost: {addr}\r\nCookie: {SESSION}={s}\r\nConnection: close\r\n\r\n"
        );
        std::io::Write::write_all(&mut stream, req.as_bytes()).unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut stream, &mut out).unwrap();
        let first = format!("HTTP/1.1 {code} ");
        assert!(out.starts_with(&first), "{method} {code}: {out}");
        assert_eq!(
            out.matches("HTTP/1.1 ").count(),
            2,
            "{method} {code}: {out}"
        );
        let second = out.rfind("HTTP/1.1 201 ").expect("second answer intact");
        assert!(
            !out[..second].contains("\r\n0\r\n"),
            "no stray chunk: {out}"
        );
        assert!(out.contains("etag: \"v1\""), "{out}");
        assert!(
            out.contains("app_pref=dark"),
            "the application's cookies pass: {out}"
        );
        assert!(
            !out.contains("planted"),
            "the upstream cannot set the gateway's cookie: {out}"
        );
    }
}

#[actix_web::test]
async fn upstream_failures_limits_and_websockets() {
    let gw = start("max_header_size = 2048\nmax_body_size = 1024\n").await;
    let s = gw.sign_in("alice", "alice-pass-1").await;
    let (status, body) = gw.api("/down/x", Some(&s)).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"], "upstream_unreachable");
    let resp = gw.navigate("/down/x", Some(&s)).await;
    assert_eq!(resp.status(), 502);
    assert!(resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let (status, body) = gw.api("/slow", Some(&s)).await;
    assert_eq!(status, 504);
    assert_eq!(body["error"], "upstream_timeout");

    let resp = gw
        .http
        .get(format!("{}/x", gw.url))
        .insert_header(("cookie", format!("{SESSION}={s}")))
        .insert_header(("x-big", "a".repeat(3000)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    let resp = gw
        .http
        .post(format!("{}/x", gw.url))
        .insert_header(("cookie", format!("{SESSION}={s}")))
        .send_body("b".repeat(2000))
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let mut resp = gw
        .http
        .post(format!("{}/x", gw.url))
        .insert_header(("cookie", format!("{SESSION}={s}")))
        .insert_header(("accept", "application/json"))
        .send_body("small body")
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.unwrap();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["headers"]["content-length"], "10");

    // Websocket: refused without a session, echoed through the proxy with one.
    match gw.http.ws(format!("{}/ws/echo", gw.url)).connect().await {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => assert_eq!(status, 401),
        Err(e) => panic!("unexpected websocket error: {e}"),
        Ok(_) => panic!("a websocket without a session was accepted"),
    }
    let (_, mut framed) = gw
        .http
        .ws(format!("{}/ws/echo", gw.url))
        .header("cookie", format!("{SESSION}={s}"))
        .connect()
        .await
        .expect("websocket through the gateway");
    framed
        .send(ws::Message::Text("hello".into()))
        .await
        .unwrap();
    let frame = framed.next().await.unwrap().unwrap();
    assert_eq!(frame, ws::Frame::Text("hello|true".into()));
    framed.send(ws::Message::Close(None)).await.unwrap();
}

#[actix_web::test]
async fn sign_out_revokes_clears_and_refuses_the_old_cookie() {
    let gw = start("").await;
    let s = gw.sign_in("alice", "alice-pass-1").await;
    let mut page = gw
        .http
        .get(format!("{}/__auth/sign_out?rd=/bye", gw.url))
        .insert_header(("cookie", format!("{SESSION}={s}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csrf = cookie_value(&set_cookie(&page, CSRF).unwrap());
    let html = String::from_utf8(page.body().await.unwrap().to_vec()).unwrap();
    assert!(html.contains("alice"), "{html}");
    let token = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(gw.api("/x", Some(&s)).await.0, 200, "GET did not sign out");

    // Without the CSRF token: refused, still signed in.
    let resp = gw
        .http
        .post(format!("{}/__auth/sign_out", gw.url))
        .insert_header(("cookie", format!("{SESSION}={s}; {CSRF}={csrf}")))
        .send_form(&[("csrf", "wrong"), ("rd", "/bye")])
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(gw.api("/x", Some(&s)).await.0, 200);

    let resp = gw
        .http
        .post(format!("{}/__auth/sign_out", gw.url))
        .insert_header(("cookie", format!("{SESSION}={s}; {CSRF}={csrf}")))
        .send_form(&[("csrf", token.as_str()), ("rd", "https://evil.com/")])
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers().get("location").unwrap(),
        "/",
        "open redirect refused"
    );
    assert!(set_cookie(&resp, SESSION).unwrap().contains("Max-Age=0"));
    assert_eq!(gw.calls("/auth/v1/revoke").await, 1);
    assert_eq!(gw.api("/x", Some(&s)).await.0, 401);
    assert_eq!(gw.api("/__auth/userinfo", Some(&s)).await.0, 401);
}

#[actix_web::test]
async fn forward_auth_answers_like_oauth2_proxy() {
    let gw = start(
        "trusted_proxies = [\"127.0.0.1\"]\n[[routes]]\npath = \"/admin\"\ngroups = [\"admin\"]\n",
    )
    .await;
    let s = gw.sign_in("alice", "alice-pass-1").await;
    let resp = gw
        .http
        .get(format!("{}/__auth/auth", gw.url))
        .insert_header(("cookie", format!("{SESSION}={s}")))
        .insert_header(("x-forwarded-uri", "/reports"))
        .insert_header(("x-forwarded-host", "app.example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let h = resp.headers();
    assert_eq!(h.get("x-auth-request-email").unwrap(), "alice@example.com");
    assert_eq!(h.get("x-auth-request-groups").unwrap(), "staff");
    assert_eq!(h.get("x-auth-request-preferred-username").unwrap(), "alice");
    assert_eq!(h.get("x-auth-request-scope").unwrap(), "user");
    assert!(!h.get("x-auth-request-user").unwrap().is_empty());
    let token = h
        .get("x-auth-request-access-token")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(
        h.get("authorization").unwrap().to_str().unwrap(),
        format!("Bearer {token}")
    );

    let resp = gw
        .http
        .get(format!("{}/__auth/auth", gw.url))
        .insert_header(("cookie", format!("{SESSION}={s}")))
        .insert_header(("x-forwarded-uri", "/admin/../admin/users"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    let resp = gw
        .http
        .get(format!("{}/__auth/auth", gw.url))
        .insert_header(("sec-fetch-mode", "navigate"))
        .insert_header(("x-forwarded-uri", "/reports"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "never a redirect");
    assert!(resp.headers().get("location").is_none());
    assert!(resp.headers().get("x-auth-request-user").is_none());

    // An untrusted peer cannot say which request it asks about: refused (fail closed).
    let plain = start("[[routes]]\npath = \"/admin\"\ngroups = [\"admin\"]\n").await;
    let s2 = plain.sign_in("alice", "alice-pass-1").await;
    let resp = plain
        .http
        .get(format!("{}/__auth/auth", plain.url))
        .insert_header(("cookie", format!("{SESSION}={s2}")))
        .insert_header(("x-forwarded-uri", "/admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[actix_web::test]
async fn userinfo_shows_the_user_never_the_tokens() {
    let gw = start("").await;
    let s = gw.sign_in("alice", "alice-pass-1").await;
    let mut resp = gw
        .http
        .get(format!("{}/__auth/userinfo", gw.url))
        .insert_header(("cookie", format!("{SESSION}={s}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap();
    let info: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(info["username"], "alice");
    assert_eq!(info["email"], "alice@example.com");
    assert_eq!(info["anonymous"], false);
    assert!(!text.contains("eyJ"), "{text}");
    assert!(!text.contains("token"), "{text}");
    let (status, body) = gw.api("/__auth/userinfo", None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "unauthenticated");
    let (status, _) = gw.api("/__auth/nothing-here", Some(&s)).await;
    assert_eq!(status, 404, "unknown gateway paths are not proxied");
    let ready = gw
        .http
        .get(format!("{}/ready", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[actix_web::test]
async fn wrong_password_and_csrf_failures_are_clear() {
    let gw = start("").await;
    let (csrf, token) = csrf_for(&gw, "/__auth/?rd=/dash").await;
    let mut resp = gw
        .http
        .post(format!("{}/__auth/sign_in/password", gw.url))
        .insert_header(("cookie", format!("{CSRF}={csrf}")))
        .send_form(&[
            ("csrf", token.as_str()),
            ("username", "alice"),
            ("password", "nope"),
            ("rd", "/dash"),
        ])
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(set_cookie(&resp, SESSION).is_none());
    let html = String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap();
    assert!(html.contains("The password is wrong."), "{html}");
    assert!(!html.contains("nope"), "the password is never echoed");
    assert!(html.contains("value=\"/dash\""), "{html}");

    let resp = gw
        .http
        .post(format!("{}/__auth/sign_in/password", gw.url))
        .send_form(&[
            ("csrf", token.as_str()),
            ("username", "alice"),
            ("password", "alice-pass-1"),
        ])
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "no CSRF cookie");
    assert!(set_cookie(&resp, SESSION).is_none());
}
