//! Regression tests for the policy bypasses and session weaknesses of issue 14, one test per
//! finding, each named after it: over real HTTP, the attack fails and the legitimate request
//! still works, and the upstream never saw what the gateway refused.

mod common;
mod harness;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use harness::{spawn_recording, start, Browser, Setup};
use serde_json::{json, Value};

type Answer = (u16, Vec<(String, String)>, String);

/// A raw HTTP/1.1 exchange: `head` is sent as is (CRLFs included), then `body`; the answer's
/// status, headers (lower-case names) and body, read until the server closes or 15 s pass.
/// Blocking I/O, run off the test's runtime so the servers on it keep going.
async fn raw_from(local: Option<&str>, addr: &str, head: &str, body: &[u8]) -> Answer {
    let (local, addr, head, body) = (
        local.map(str::to_string),
        addr.to_string(),
        head.to_string(),
        body.to_vec(),
    );
    actix_web::rt::task::spawn_blocking(move || raw_blocking(local.as_deref(), &addr, &head, &body))
        .await
        .unwrap()
}

fn raw_blocking(local: Option<&str>, addr: &str, head: &str, body: &[u8]) -> Answer {
    let target: SocketAddr = addr.trim_start_matches("http://").parse().unwrap();
    let mut s = match local {
        None => TcpStream::connect(target).unwrap(),
        Some(ip) => {
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            let from: SocketAddr = format!("{ip}:0").parse().unwrap();
            sock.bind(&from.into()).unwrap();
            sock.connect(&target.into()).unwrap();
            sock.into()
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                // One answer is enough: stop once its declared body is in.
                if let Some(done) = complete(&out) {
                    out.truncate(done);
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// The length of the first complete response in `out` that declares a `Content-Length`.
fn complete(out: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(out);
    let (head, _) = text.split_once("\r\n\r\n")?;
    let len: usize = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })?;
    let total = head.len() + 4 + len;
    (out.len() >= total).then_some(total)
}

async fn raw(addr: &str, head: &str) -> Answer {
    raw_from(None, addr, head, b"").await
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn host_of(s: &Setup) -> String {
    s.url.trim_start_matches("http://").to_string()
}

/// `GET /__auth/auth` from `b`'s address (`127.0.0.1`) with its cookies and `headers`.
async fn forward_auth(b: &Browser, headers: &[(&str, &str)]) -> awc::ClientResponse<impl Sized> {
    let mut req = b.http.get(b.url("/__auth/auth"));
    let cookies = b.cookie_header();
    if !cookies.is_empty() {
        req = req.insert_header(("cookie", cookies));
    }
    for (k, v) in headers {
        req = req.append_header((*k, *v));
    }
    req.send().await.unwrap()
}

// ----- 1. case -----

#[actix_web::test]
async fn case_bypass_upper_case_paths_get_the_stricter_policy() {
    let (echo, seen) = spawn_recording(true);
    let s = start(&format!(
        "trusted_proxies = [\"127.0.0.1\"]\n\
         [[routes]]\npath = \"/\"\npolicy = \"public\"\nupstream = \"{echo}\"\n\
         [[routes]]\npath = \"/admin\"\ngroups = [\"admin\"]\nupstream = \"{echo}\"\n\
         [[routes]]\npath = \"/api\"\npolicy = \"registered\"\nupstream = \"{echo}\"\n"
    ))
    .await;
    let nobody = s.browser();
    for path in ["/ADMIN/users", "/Admin/users", "/%41DMIN/users", "/aDmIn"] {
        assert_eq!(nobody.upstream(path).await.0, 401, "{path}");
        let page = nobody.get(path).await;
        assert_eq!(page.status, 302, "{path}");
        assert!(page.location.starts_with("/__auth/?rd="), "{path}");
    }
    let alice = s.signed_in("alice", "alice-pass-1").await;
    for path in ["/ADMIN/users", "/admin/users", "/API/../ADMIN"] {
        assert_eq!(alice.upstream(path).await.0, 403, "{path}");
    }
    let visitor = s.guest().await;
    for path in ["/API/data", "/Api/data", "/api/data"] {
        assert_eq!(visitor.upstream(path).await.0, 403, "{path}");
    }
    // Forward-auth checks the same readings.
    for uri in ["/ADMIN", "/Admin/users?x=1"] {
        let resp = forward_auth(&nobody, &[("x-forwarded-uri", uri)]).await;
        assert_eq!(resp.status(), 401, "{uri}");
        let resp = forward_auth(&visitor, &[("x-forwarded-uri", uri)]).await;
        assert_eq!(resp.status(), 403, "{uri}");
    }
    assert_eq!(
        forward_auth(&visitor, &[("x-forwarded-uri", "/API/data")])
            .await
            .status(),
        403
    );
    assert!(!seen.any("admin") && !seen.any("/api"), "{:?}", seen.all());

    // What the policies allow still passes.
    let (status, body) = alice.upstream("/API/data").await;
    assert_eq!((status, body["path"].as_str()), (200, Some("/api/data")));
    assert_eq!(visitor.upstream("/Public/Page").await.0, 200);
    assert_eq!(nobody.upstream("/docs").await.0, 200);
    assert_eq!(
        forward_auth(&alice, &[("x-forwarded-uri", "/API/data")])
            .await
            .status(),
        202
    );
}

// ----- 2, 3, 7. forward-auth headers, failing closed, token exposure -----

#[actix_web::test]
async fn forwarded_headers_bypass_uri_headers_must_agree_and_the_host_is_never_forwarded() {
    let s = start(
        "trusted_proxies = [\"127.0.0.1\"]\n\
         [[routes]]\nhost = \"open.example.com\"\npath = \"/\"\npolicy = \"public\"\n\
         [[routes]]\npath = \"/public\"\npolicy = \"public\"\n\
         [[routes]]\npath = \"/admin\"\ngroups = [\"admin\"]\n",
    )
    .await;
    let host = host_of(&s);
    let nobody = s.browser();
    let attacks: Vec<Vec<(&str, String)>> = vec![
        // nginx set X-Original-URI; the browser added X-Forwarded-Uri.
        vec![
            ("x-original-uri", "/admin".into()),
            ("x-forwarded-uri", "/public".into()),
        ],
        // nginx set X-Forwarded-Uri; the browser added X-Original-URL for a public host.
        vec![
            ("x-forwarded-uri", "/admin".into()),
            ("x-original-url", "http://open.example.com/admin".into()),
        ],
        vec![
            ("x-forwarded-uri", "/admin".into()),
            ("x-original-url", format!("http://{host}/public")),
        ],
        // Repeated.
        vec![
            ("x-forwarded-uri", "/admin".into()),
            ("x-forwarded-uri", "/public".into()),
        ],
        // No URI at all from a trusted proxy.
        vec![],
        // A browser's raw Host in nginx's `$http_host` ending the authority early.
        vec![("x-original-url", format!("http://{host}#/admin"))],
        vec![("x-original-url", "http://127.0.0.1:1?/admin".into())],
        vec![(
            "x-original-url",
            "http://127.0.0.1:1@evil.example/admin".into(),
        )],
        vec![("x-forwarded-uri", "/#/admin".into())],
    ];
    for headers in &attacks {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = forward_auth(&nobody, &h).await;
        assert_eq!(resp.status(), 400, "{headers:?}");
    }
    // X-Forwarded-Host is never read: the Host nginx sends decides.
    for xfh in ["open.example.com", "OPEN.example.com."] {
        let resp = forward_auth(
            &nobody,
            &[("x-forwarded-uri", "/admin"), ("x-forwarded-host", xfh)],
        )
        .await;
        assert_eq!(resp.status(), 401, "{xfh}");
    }
    // The legitimate reads.
    let alice = s.signed_in("alice", "alice-pass-1").await;
    for headers in [
        vec![("x-original-url", format!("http://{host}/public?x=1"))],
        vec![("x-forwarded-uri", "/public".to_string())],
        vec![("x-original-uri", "/public".to_string())],
        vec![
            ("x-original-url", format!("http://{host}/public?x=1")),
            ("x-forwarded-uri", "/public".to_string()),
        ],
    ] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(forward_auth(&nobody, &h).await.status(), 202, "{headers:?}");
    }
    let resp = forward_auth(&alice, &[("x-forwarded-uri", "/admin/x")]).await;
    assert_eq!(resp.status(), 403);
    let resp = forward_auth(&alice, &[("x-forwarded-uri", "/reports")]).await;
    assert_eq!(resp.status(), 202);
    assert!(resp.headers().get("authorization").is_some());
    // A host nginx passes on as `Host` is the host checked.
    let (status, _, _) = raw(
        &s.url,
        "GET /__auth/auth HTTP/1.1\r\nHost: open.example.com\r\nX-Forwarded-Uri: /admin\r\nConnection: close\r\n\r\n",
    ).await;
    assert_eq!(status, 202, "open.example.com is public");
}

#[actix_web::test]
async fn forward_auth_fails_closed_for_callers_outside_trusted_proxies() {
    let s = start(
        "trusted_proxies = [\"127.0.0.1\"]\n[[routes]]\npath = \"/admin\"\ngroups = [\"admin\"]\n",
    )
    .await;
    let visitor = s.guest().await;
    let host = host_of(&s);
    let ask = |cookie: String| {
        format!(
            "GET /__auth/auth HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nX-Forwarded-Uri: /admin\r\nConnection: close\r\n\r\n"
        )
    };
    let (status, headers, body) = raw_from(
        Some("127.0.0.2"),
        &s.url,
        &ask(visitor.cookie_header()),
        b"",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("untrusted_proxy"), "{body}");
    assert!(header(&headers, "x-auth-request-user").is_none());
    // From the trusted proxy the same guest is refused by the policy instead.
    let (status, _, body) = raw(&s.url, &ask(visitor.cookie_header())).await;
    assert_eq!(status, 403);
    assert!(body.contains("\"forbidden\""), "{body}");

    // root_policy: today's behaviour for deployments without path policies, never a token.
    let open = start(
        "trusted_proxies = [\"127.0.0.1\"]\nforward_auth_without_trusted_proxy = \"root_policy\"\n",
    )
    .await;
    let alice = open.signed_in("alice", "alice-pass-1").await;
    let host = host_of(&open);
    let (status, headers, _) = raw_from(
        Some("127.0.0.2"),
        &open.url,
        &format!(
            "GET /__auth/auth HTTP/1.1\r\nHost: {host}\r\nCookie: {}\r\nX-Forwarded-Uri: /anything\r\nConnection: close\r\n\r\n",
            alice.cookie_header()
        ),
        b"",
    ).await;
    assert_eq!(status, 202);
    assert!(header(&headers, "x-auth-request-user").is_some());
    assert!(header(&headers, "authorization").is_none());
    assert!(header(&headers, "x-auth-request-access-token").is_none());
}

#[actix_web::test]
async fn forward_auth_sends_the_token_only_to_trusted_proxies() {
    // No trusted proxy at all: a same-origin script fetching the endpoint gets no token.
    let s = start("forward_auth_without_trusted_proxy = \"root_policy\"\n").await;
    let alice = s.signed_in("alice", "alice-pass-1").await;
    let resp = forward_auth(&alice, &[("sec-fetch-mode", "cors")]).await;
    assert_eq!(resp.status(), 202);
    assert!(resp.headers().get("x-auth-request-email").is_some());
    assert!(resp.headers().get("authorization").is_none());
    assert!(resp.headers().get("x-auth-request-access-token").is_none());

    // A trusted proxy gets it, unless forward_auth_pass_access_token is off.
    let s = start("trusted_proxies = [\"127.0.0.1\"]\n").await;
    let alice = s.signed_in("alice", "alice-pass-1").await;
    let resp = forward_auth(&alice, &[("x-forwarded-uri", "/")]).await;
    assert_eq!(resp.status(), 202);
    let bearer = resp
        .headers()
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(bearer.starts_with("Bearer ey"));
    // A script fetching the endpoint through a proxy that exposes it asks about the endpoint
    // itself: identity only.
    for uri in ["/__auth/auth", "/__AUTH/auth?x", "/__auth/userinfo"] {
        let resp = forward_auth(&alice, &[("x-forwarded-uri", uri)]).await;
        assert_eq!(resp.status(), 202, "{uri}");
        assert!(resp.headers().get("x-auth-request-user").is_some());
        assert!(resp.headers().get("authorization").is_none(), "{uri}");
        assert!(resp.headers().get("x-auth-request-access-token").is_none());
    }
    let off =
        start("trusted_proxies = [\"127.0.0.1\"]\nforward_auth_pass_access_token = false\n").await;
    let alice = off.signed_in("alice", "alice-pass-1").await;
    let resp = forward_auth(&alice, &[("x-forwarded-uri", "/")]).await;
    assert_eq!(resp.status(), 202);
    assert!(resp.headers().get("x-auth-request-user").is_some());
    assert!(resp.headers().get("authorization").is_none());
    assert!(resp.headers().get("x-auth-request-access-token").is_none());
}

// ----- 4. base path escape -----

#[actix_web::test]
async fn base_path_escape_dot_segments_never_reach_an_upstream_with_a_base_path() {
    let (echo, seen) = spawn_recording(false);
    let s = start(&format!(
        "[[routes]]\npath = \"/\"\npolicy = \"public\"\nupstream = \"{echo}/site\"\n"
    ))
    .await;
    let host = host_of(&s);
    for path in [
        "/../internal/x",
        "/%2e%2e/internal/x",
        "/%2E%2E/internal/x",
        "/a/../../internal/x",
        "/a/..;/..;/internal/x",
        "/%252e%252e/internal/x",
        "/a%2f..%2f..%2finternal/x",
        "/a/%2e%2e%2f%2e%2e/internal",
    ] {
        let (status, _, body) = raw(
            &s.url,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"),
        ).await;
        assert_eq!(status, 400, "{path}: {body}");
    }
    assert!(!seen.any("internal"), "{:?}", seen.all());
    let (status, _, body) = raw(
        &s.url,
        &format!("GET /x/y?z=1 HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"),
    ).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(seen.all(), vec!["GET /site/x/y?z=1".to_string()]);
}

// ----- 5. unknown hosts -----

#[actix_web::test]
async fn unknown_hosts_are_refused_and_never_reach_the_upstream() {
    let s = start("").await;
    let host = host_of(&s);
    let port = host.rsplit(':').next().unwrap().to_string();
    let get = |head: String| {
        let url = s.url.clone();
        async move { raw(&url, &head).await }
    };
    for h in [
        "evil.example",
        "evil.example:80",
        "127.0.0.1.evil.example",
        "localhost",
    ] {
        let (status, _, body) = get(format!(
            "GET / HTTP/1.1\r\nHost: {h}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        ))
        .await;
        assert_eq!(status, 421, "{h}: {body}");
        assert!(body.contains("unknown_host"), "{body}");
        let (status, _, _) = get(format!(
            "GET /__auth/ HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"
        ))
        .await;
        assert_eq!(status, 421, "{h}: the login page too");
    }
    // A host an app would turn into a link to somewhere else.
    for h in [
        format!("{host}@evil.example"),
        format!("evil.example@{host}"),
        format!("{host}:80"),
        "127.0.0.1 evil.example".to_string(),
    ] {
        let (status, _, body) = get(format!(
            "GET / HTTP/1.1\r\nHost: {h}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        ))
        .await;
        assert_eq!(status, 400, "{h}: {body}");
    }
    // Two hosts in one request.
    let (status, _, _) = get(format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    ))
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = get(format!(
        "GET http://evil.example/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    ))
    .await;
    assert_eq!(status, 400);
    // Health checks answer whatever host the orchestrator uses.
    let (status, _, _) =
        get("GET /ping HTTP/1.1\r\nHost: 10.1.2.3:4180\r\nConnection: close\r\n\r\n".into()).await;
    assert_eq!(status, 200);
    // Our own host, any case and with a trailing dot, is served.
    let (status, _, _) = get(format!(
        "GET /__auth/ HTTP/1.1\r\nHost: 127.0.0.1.:{port}\r\nConnection: close\r\n\r\n"
    ))
    .await;
    assert_eq!(status, 200);

    // allowed_hosts adds hosts; insecure_allow_any_host allows every one.
    let s = start("allowed_hosts = [\".corp.example.com\"]\n").await;
    let alice = s.signed_in("alice", "alice-pass-1").await;
    let (status, _, body) = raw(
        &s.url,
        &format!(
            "GET /x HTTP/1.1\r\nHost: wiki.corp.example.com\r\nCookie: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
            alice.cookie_header()
        ),
    ).await;
    assert_eq!(status, 200, "{body}");
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["headers"]["x-forwarded-host"], "wiki.corp.example.com");
    let (status, _, _) = raw(
        &s.url,
        "GET /x HTTP/1.1\r\nHost: evilcorp.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 421);
    let any = start("insecure_allow_any_host = true\n").await;
    let (status, _, _) = raw(
        &any.url,
        "GET /__auth/ HTTP/1.1\r\nHost: anything.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
}

// ----- 6. login CSRF through the ticket form -----

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[actix_web::test]
async fn ticket_login_csrf_needs_the_token_and_a_ticket_signs_in_once() {
    let (private, public, _) = harness::ticket_keys();
    let mut opts = cloudbase_gateway::emulator::EmulatorOptions::new("test-env");
    opts.ticket_keys = vec![("key-1".into(), public)];
    let s = harness::start_with(opts, "").await;
    let t0 = now_ms();
    // The attack: a plain HTML form in the app behind us (our origin, user content) posts the
    // attacker's ticket. The victim's browser sends our Origin and its CSRF cookie, but the
    // form cannot know the token.
    let victim = s.browser();
    victim.get("/__auth/").await;
    let attacker_ticket = harness::make_ticket(&private, "test-env", t0);
    let page = victim
        .send(
            victim
                .http
                .post(victim.url("/__auth/ticket"))
                .insert_header(("origin", s.url.as_str()))
                .insert_header(("sec-fetch-site", "same-origin")),
            Some(vec![("ticket".into(), attacker_ticket.clone())]),
        )
        .await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(victim.session().is_none());
    assert_eq!(s.calls("/auth/v1/signin/custom").await, 0);
    // JSON from another site's page is refused too.
    let resp = victim
        .http
        .post(victim.url("/__auth/ticket"))
        .insert_header(("origin", "https://evil.example"))
        .send_json(&json!({ "ticket": attacker_ticket }))
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // A JSON post needs the JSON content type: a form-encoded body is a form, token required.
    let resp = victim
        .http
        .post(victim.url("/__auth/ticket"))
        .insert_header(("content-type", "text/plain"))
        .send_body(json!({ "ticket": attacker_ticket }).to_string())
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(s.calls("/auth/v1/signin/custom").await, 0);

    // The legitimate posts: the form with its token, and JSON from the app's backend.
    let page = victim
        .post(
            "/__auth/ticket",
            &[("ticket", &attacker_ticket), ("rd", "/x")],
        )
        .await;
    assert_eq!((page.status, page.location.as_str()), (302, "/x"));
    let replay = s.browser();
    replay.get("/__auth/").await;
    let page = replay
        .post("/__auth/ticket", &[("ticket", &attacker_ticket)])
        .await;
    assert_eq!(page.status, 401, "a ticket signs in once: {}", page.body);
    assert!(replay.session().is_none());
    let resp = awc::Client::new()
        .post(format!("{}/__auth/ticket", s.url))
        .send_json(&json!({ "ticket": harness::make_ticket(&private, "test-env", t0 + 1) }))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

// ----- 8. other sessions end after a password change, a reset, or "everywhere" -----

/// Changes the password of `b`'s user from `old` to `new`, ticking "sign out of my other
/// devices" or not.
async fn change_password(b: &Browser, old: &str, new: &str, sign_out_others: bool) {
    b.get("/__auth/account/confirm?change=password").await;
    let ok = b
        .post(
            "/__auth/account/sudo",
            &[
                ("change", "password"),
                ("method", "password"),
                ("password", old),
            ],
        )
        .await;
    assert_eq!(ok.status, 302, "{}", ok.body);
    let flow = harness::flow_of(&ok.location);
    let form = b.get(&ok.location).await;
    assert!(
        form.body
            .contains("name=\"sign_out_others\" type=\"checkbox\" value=\"1\" checked"),
        "checked by default: {}",
        form.body
    );
    let mut fields = vec![("flow", flow.as_str()), ("new_password", new)];
    if sign_out_others {
        fields.push(("sign_out_others", "1"));
    }
    let done = b.post("/__auth/account/change", &fields).await;
    assert_eq!(
        done.location, "/__auth/account?done=password",
        "{}",
        done.body
    );
}

#[actix_web::test]
async fn other_sessions_survive_a_password_change_or_reset_no_more() {
    // 60 s tokens: every request refreshes, so a session that survived would show it.
    let mut opts = cloudbase_gateway::emulator::EmulatorOptions::new("test-env");
    opts.access_token_ttl = 60;
    let s = harness::start_with(opts, "").await;
    let here = s.signed_in("alice", "alice-pass-1").await;
    let stolen = s.signed_in("alice", "alice-pass-1").await;
    let bob = s.signed_in("bob", "bob-pass-1").await;
    assert_eq!(stolen.userinfo().await["username"], "alice");
    let revokes = s.calls("/auth/v1/revoke").await;
    change_password(&here, "alice-pass-1", "alice-pass-2", true).await;
    assert_eq!(
        here.userinfo().await["username"],
        "alice",
        "this browser stays"
    );
    assert_eq!(
        stolen.userinfo().await,
        Value::Null,
        "the other browser is out"
    );
    assert_eq!(stolen.upstream("/x").await.0, 401);
    assert_eq!(bob.userinfo().await["username"], "bob", "other users stay");
    assert_eq!(
        s.calls("/auth/v1/revoke").await,
        revokes + 1,
        "its token revoked"
    );

    // Unticked, the other sessions stay.
    let other = s.signed_in("alice", "alice-pass-2").await;
    change_password(&here, "alice-pass-2", "alice-pass-3", false).await;
    assert_eq!(other.userinfo().await["username"], "alice");

    // A forgotten-password reset ends every session of the user.
    let resetting = s.browser();
    resetting.get("/__auth/forgot").await;
    let sent = resetting
        .post("/__auth/forgot", &[("contact", "alice@example.com")])
        .await;
    assert_eq!(sent.status, 302, "{}", sent.body);
    let flow = harness::flow_of(&sent.location);
    let code = s.env.code_for("alice@example.com").await;
    let done = resetting
        .post(
            "/__auth/code",
            &[
                ("flow", &flow),
                ("code", &code),
                ("password", "alice-pass-4"),
            ],
        )
        .await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(resetting.userinfo().await["username"], "alice");
    for b in [&here, &other] {
        assert_eq!(b.userinfo().await, Value::Null);
    }
    assert_eq!(bob.userinfo().await["username"], "bob");
    // No refresh brings them back: their records are gone and their tokens revoked.
    s.env.advance(120).await;
    s.clock.advance(Duration::from_secs(120));
    assert_eq!(here.upstream("/x").await.0, 401);
    assert_eq!(resetting.userinfo().await["username"], "alice");
}

#[actix_web::test]
async fn sign_out_everywhere_ends_every_session_of_the_user() {
    let s = start("").await;
    let a = s.signed_in("alice", "alice-pass-1").await;
    let b = s.signed_in("alice", "alice-pass-1").await;
    let bob = s.signed_in("bob", "bob-pass-1").await;
    let page = a.get("/__auth/account").await;
    assert!(page.has("name=\"everywhere\" value=\"1\""), "{}", page.body);
    // Without the form token nothing happens.
    let refused = a.post_raw("/__auth/sign_out", &[("everywhere", "1")]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(b.userinfo().await["username"], "alice");
    let done = a.post("/__auth/sign_out", &[("everywhere", "1")]).await;
    assert_eq!(done.status, 302);
    assert_eq!(done.location, "/__auth/signed_out");
    for x in [&a, &b] {
        assert_eq!(x.userinfo().await, Value::Null);
    }
    assert_eq!(bob.userinfo().await["username"], "bob");
    assert_eq!(s.calls("/auth/v1/user/revoke/all").await, 1);

    // CloudBase cannot confirm the rest: signed out here all the same, and told so.
    let c = s.signed_in("alice", "alice-pass-1").await;
    let d = s.signed_in("alice", "alice-pass-1").await;
    let (status, _) = s
        .env
        .post_json(
            "/__emulator/faults",
            json!({ "path": "/auth/v1/user/revoke/all" }),
        )
        .await;
    assert_eq!(status, 200);
    c.get("/__auth/account").await;
    let done = c
        .post("/__auth/sign_out", &[("everywhere", "1"), ("rd", "/x")])
        .await;
    assert_eq!(done.location, "/__auth/signed_out?partial=1");
    let page = c.get(&done.location).await;
    assert!(
        page.has("your other apps could not be signed out"),
        "{}",
        page.body
    );
    for x in [&c, &d] {
        assert_eq!(x.userinfo().await, Value::Null);
    }
}

// ----- 9. linking a provider needs a fresh sign-in or sudo; the last way in stays -----

#[actix_web::test]
async fn provider_linking_needs_a_recent_sign_in_or_sudo() {
    let s = start("providers = [\"github=GitHub\"]\n").await;
    let thief = s.signed_in("alice", "alice-pass-1").await;
    // Ten minutes later (a stolen cookie is rarely fresh), linking asks who you are.
    s.clock.advance(Duration::from_secs(600));
    s.env.advance(600).await;
    thief.get("/__auth/account").await;
    let page = thief
        .post("/__auth/start", &[("provider", "github"), ("bind", "1")])
        .await;
    assert_eq!(page.status, 302, "{}", page.body);
    assert_eq!(
        page.location,
        "/__auth/account/confirm?change=link&provider=github"
    );
    assert_eq!(s.calls("/auth/v1/provider/uri").await, 0);
    let confirm = thief.get(&page.location).await;
    assert!(
        confirm.has("Linking GitHub adds a way to sign in"),
        "{}",
        confirm.body
    );
    assert!(confirm.has("name=\"provider\" value=\"github\""));
    // Without the password: no link. A made-up flow id gets nowhere either.
    let wrong = thief
        .post(
            "/__auth/account/sudo",
            &[
                ("change", "link"),
                ("provider", "github"),
                ("method", "password"),
                ("password", "guess"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let made_up = thief.get("/__auth/account/change?flow=abc").await;
    assert_eq!(made_up.status, 400);
    // An unconfigured provider has no confirmation page.
    assert_eq!(
        thief
            .get("/__auth/account/confirm?change=link&provider=evil")
            .await
            .status,
        404
    );
    assert_eq!(s.calls("/auth/v1/provider/uri").await, 0);
    assert_eq!(s.calls("/auth/v1/user/provider/bind").await, 0);
    // Nor does confirming fail for the thief when asked for an e-mail change.
    let email = thief
        .post(
            "/__auth/account/sudo",
            &[
                ("change", "email"),
                ("method", "password"),
                ("password", "guess"),
            ],
        )
        .await;
    assert_eq!(email.status, 401);

    // The owner, who knows the password, confirms and goes on to the provider.
    let owner = &thief;
    let ok = owner
        .post(
            "/__auth/account/sudo",
            &[
                ("change", "link"),
                ("provider", "github"),
                ("method", "password"),
                ("password", "alice-pass-1"),
            ],
        )
        .await;
    assert_eq!(ok.status, 302, "{}", ok.body);
    // CloudBase fails once: the confirmation is kept for another try.
    let (status, _) = s
        .env
        .post_json(
            "/__emulator/faults",
            json!({ "path": "/auth/v1/provider/uri" }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(owner.get(&ok.location).await.status, 503);
    let to_provider = owner.get(&ok.location).await;
    assert_eq!(to_provider.status, 302, "{}", to_provider.body);
    assert!(to_provider.location.starts_with(&s.env.emu.url));
    let back = harness::consent(owner, &to_provider.location, "approve").await;
    let done = owner.get(&back.location).await;
    assert_eq!(
        done.location, "/__auth/account?done=linked",
        "{}",
        done.body
    );
    assert_eq!(s.calls("/auth/v1/user/provider/bind").await, 1);
    // The confirmation was spent.
    assert_eq!(owner.get(&ok.location).await.status, 400);

    // Right after signing in, linking goes straight to the provider.
    let fresh = s.signed_in("bob", "bob-pass-1").await;
    fresh.get("/__auth/account").await;
    let page = fresh
        .post("/__auth/start", &[("provider", "github"), ("bind", "1")])
        .await;
    assert_eq!(page.status, 302);
    assert!(
        page.location.starts_with(&s.env.emu.url),
        "{}",
        page.location
    );
}

#[actix_web::test]
async fn unlinking_the_last_sign_in_method_is_refused() {
    let s = start("providers = [\"github=GitHub\"]\n").await;
    // A user who only ever signed in with GitHub: no password, e-mail or phone.
    let b = s.browser();
    let page = b.get("/__auth/start?provider=github&rd=/").await;
    let back = harness::consent(&b, &page.location, "approve").await;
    assert_eq!(b.get(&back.location).await.status, 302);
    b.get("/__auth/account").await;
    let page = b
        .post("/__auth/account/unlink", &[("provider", "github")])
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.has("This is the only way to sign in"), "{}", page.body);
    assert_eq!(s.calls("/auth/v1/user/provider/github").await, 0);
    let users = s.env.get_json("/__emulator/users").await;
    assert!(users.to_string().contains("github-octocat"), "still linked");

    // With a password as well, unlinking works.
    let s = start("providers = [\"github=GitHub\"]\n").await;
    let alice = s.signed_in("alice", "alice-pass-1").await;
    alice.get("/__auth/account").await;
    let page = alice
        .post("/__auth/start", &[("provider", "github"), ("bind", "1")])
        .await;
    let back = harness::consent(&alice, &page.location, "approve").await;
    let linked = alice.get(&back.location).await;
    assert_eq!(linked.location, "/__auth/account?done=linked");
    alice.get("/__auth/account").await;
    let page = alice
        .post("/__auth/account/unlink", &[("provider", "github")])
        .await;
    assert_eq!(
        page.location, "/__auth/account?done=unlinked",
        "{}",
        page.body
    );
}

// ----- 10. plain-http provider and captcha pages -----

#[actix_web::test]
async fn plain_http_provider_and_captcha_pages_are_refused_outside_insecure_cookie() {
    // A production-like gateway (https, Secure cookies) in front of a CloudBase whose pages are
    // plain http (the emulator's): the browser is never sent there.
    let s = start(
        "public_url = \"https://app.example.com\"\nallowed_hosts = [\"127.0.0.1\"]\nproviders = [\"github\"]\n",
    )
    .await;
    let b = s.browser();
    let page = b.get("/__auth/start?provider=github&rd=/").await;
    assert_eq!(page.status, 502, "{}", page.body);
    assert!(page.location.is_empty());
    assert!(
        page.has("The other service could not confirm who you are"),
        "{}",
        page.body
    );
    assert_eq!(s.calls("/auth/v1/provider/uri").await, 1);
    s.env.settings(json!({ "captcha_required": true })).await;
    b.get("/__auth/").await;
    let page = b
        .post(
            "/__auth/sign_in/password",
            &[("username", "alice"), ("password", "alice-pass-1")],
        )
        .await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.location.is_empty());
    assert_eq!(s.calls("/auth/v1/captcha/init").await, 1);

    // In insecure_cookie development the same pages are used.
    let dev = start("providers = [\"github\"]\n").await;
    let page = dev
        .browser()
        .get("/__auth/start?provider=github&rd=/")
        .await;
    assert_eq!(page.status, 302);
    assert!(page.location.starts_with("http://127.0.0.1"));
}

// ----- 11. unauthenticated CloudBase calls are limited per client -----

#[actix_web::test]
async fn unauthenticated_cloudbase_calls_are_rate_limited_per_client() {
    let (private, public, other) = harness::ticket_keys();
    let mut opts = cloudbase_gateway::emulator::EmulatorOptions::new("test-env");
    opts.ticket_keys = vec![("key-1".into(), public)];
    let s = harness::start_with(
        opts,
        "providers = [\"github\"]\nrate_limit_start_per_ip = \"3/1m\"\nrate_limit_ticket_per_ip = \"2/1m\"\nrate_limit_captcha_per_ip = \"2/1m\"\n",
    )
    .await;
    let b = s.browser();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let page = b.get("/__auth/start?provider=github&rd=/").await;
        if page.status == 429 {
            assert!(page.headers.get("retry-after").is_some());
        }
        statuses.push(page.status);
    }
    assert_eq!(statuses, [302, 302, 302, 429, 429, 429]);
    assert_eq!(s.calls("/auth/v1/provider/uri").await, 3);

    // Tickets that sign in do not count; refused ones do.
    let http = awc::Client::new();
    let post = |t: String| {
        let http = http.clone();
        let url = format!("{}/__auth/ticket", s.url);
        async move {
            http.post(url)
                .send_json(&json!({ "ticket": t }))
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let t0 = now_ms();
    for i in 0..4 {
        assert_eq!(
            post(harness::make_ticket(&private, "test-env", t0 + i)).await,
            200
        );
    }
    let forged = |i| harness::make_ticket(&other, "test-env", t0 + 100 + i);
    assert_eq!(post(forged(1)).await, 401);
    assert_eq!(post(forged(2)).await, 401);
    assert_eq!(post(forged(3)).await, 429);
    assert_eq!(
        post(harness::make_ticket(&private, "test-env", t0 + 9)).await,
        429
    );
    assert_eq!(s.calls("/auth/v1/signin/custom").await, 6);

    // Captchas started.
    s.env.settings(json!({ "captcha_required": true })).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let b = s.browser();
        b.get("/__auth/").await;
        let page = b
            .post(
                "/__auth/sign_in/password",
                &[("username", "alice"), ("password", "alice-pass-1")],
            )
            .await;
        statuses.push(page.status);
    }
    assert_eq!(statuses, [302, 302, 429]);
    assert_eq!(s.calls("/auth/v1/captcha/init").await, 2);
}

// ----- 12. request bodies have a deadline -----

#[actix_web::test]
async fn slow_request_bodies_are_cut_off() {
    let (echo, seen) = spawn_recording(false);
    let s = start(&format!(
        "client_body_timeout = \"1s\"\n[[routes]]\npath = \"/upload\"\npolicy = \"public\"\nupstream = \"{echo}\"\n"
    ))
    .await;
    let host = host_of(&s);
    // A form the gateway reads itself, one byte then nothing.
    let (status, headers, body) = raw_from(
        None,
        &s.url,
        &format!(
            "POST /__auth/sign_in/password HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\nAccept: text/html\r\n\r\n"
        ),
        b"u",
    )
    .await;
    assert_eq!(status, 408, "{body}");
    assert_eq!(header(&headers, "connection"), Some("close"));
    // A proxied upload that stops sending.
    let (status, _, body) = raw_from(
        None,
        &s.url,
        &format!(
            "POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000\r\nAccept: application/json\r\n\r\n"
        ),
        b"0123456789",
    )
    .await;
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("body_timeout"), "{body}");
    // Bodies that arrive are passed on.
    let (status, _, body) = raw_from(
        None,
        &s.url,
        &format!(
            "POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 10\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        ),
        b"0123456789",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(seen.all(), vec!["POST /upload?".to_string()]);
}

// ----- 14. client mistakes get client answers -----

#[actix_web::test]
async fn client_mistakes_get_client_answers() {
    let s = start("[[routes]]\npath = \"/open\"\npolicy = \"public\"\n").await;
    let host = host_of(&s);
    let ask = |line: &str, extra: &str| {
        format!("{line}\r\nHost: {host}\r\nAccept: application/json\r\n{extra}Connection: close\r\n\r\n")
    };
    for line in ["OPTIONS * HTTP/1.1", "GET * HTTP/1.1"] {
        let (status, _, body) = raw(&s.url, &ask(line, "")).await;
        assert_eq!(status, 400, "{line}: {body}");
    }
    for line in ["TRACE /open HTTP/1.1", "TRACE / HTTP/1.1"] {
        let (status, headers, body) = raw(&s.url, &ask(line, "")).await;
        assert_eq!(status, 405, "{line}: {body}");
        assert!(header(&headers, "allow").is_some_and(|a| !a.contains("TRACE")));
    }
    let (status, _, body) = raw(&s.url, &ask(&format!("CONNECT {host} HTTP/1.1"), "")).await;
    assert_eq!(status, 405, "CONNECT: {body}");
    let (status, _, body) = raw_from(
        None,
        &s.url,
        &ask("POST /open HTTP/1.1", "Transfer-Encoding: chunked\r\n"),
        b"zz\r\nnot a chunk\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "a malformed chunked body: {body}");
    // A well-formed chunked body passes.
    let (status, _, body) = raw_from(
        None,
        &s.url,
        &ask("POST /open HTTP/1.1", "Transfer-Encoding: chunked\r\n"),
        b"5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

// ----- 16. nameless upstream cookies -----

#[actix_web::test]
async fn nameless_and_case_folded_upstream_cookies_are_dropped() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("http://{}", l.local_addr().unwrap());
    let server = HttpServer::new(|| {
        App::new().default_service(web::to(|| async {
            let mut b = HttpResponse::Ok();
            for c in [
                "=cbgw_session=planted; Path=/",
                "cbgw_session",
                "CBGW_SESSION=planted; Path=/",
                " cbgw_session =planted",
                "Cbgw_Session_Csrf=planted",
                "=planted",
                "app_pref=dark; Path=/",
            ] {
                b.append_header(("set-cookie", c));
            }
            b.body("ok")
        }))
    })
    .workers(1)
    .disable_signals()
    .listen(l)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    let s = start(&format!(
        "[[routes]]\npath = \"/app\"\npolicy = \"public\"\nupstream = \"{upstream}\"\n"
    ))
    .await;
    let resp = awc::Client::new()
        .get(format!("{}/app", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookies: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(cookies, vec!["app_pref=dark; Path=/".to_string()]);
}

// ----- 15. upstreams that answer HTTP/1.0 and close -----

/// An upstream like Python's `http.server`: answers `HTTP/1.0` with a `Content-Length`, no
/// `Connection` header, then logs the request line and closes (that moment is when a pooled
/// connection looks alive but is not). Counts the requests it answered.
fn spawn_http10() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let answered = count.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let answered = answered.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(
                    b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
                );
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // The request line goes to stderr before the socket closes.
                std::thread::sleep(Duration::from_millis(20));
            });
        }
    });
    (url, count)
}

#[actix_web::test]
async fn http10_upstreams_that_close_never_give_502() {
    let (upstream, answered) = spawn_http10();
    let s = start(&format!(
        "[[routes]]\npath = \"/py\"\npolicy = \"public\"\nupstream = \"{upstream}\"\n"
    ))
    .await;
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(20))
        .connector(awc::Connector::new().limit(200))
        .finish();
    // GETs, whose answers have a body, then HEADs, whose answers have none (awc releases
    // those connections before the gateway sees them: the retry on a fresh one covers them).
    for (round, method) in ["GET", "GET", "GET", "HEAD", "HEAD"].iter().enumerate() {
        let requests = (0..100).map(|i| {
            let client = client.clone();
            let url = format!("{}/py/{round}/{i}", s.url);
            let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
            async move {
                match client.request(method, url).send().await {
                    Ok(mut r) => {
                        let body = r.body().await.map(|b| b.to_vec()).unwrap_or_default();
                        (r.status().as_u16(), body)
                    }
                    Err(_) => (0, Vec::new()),
                }
            }
        });
        let results = futures_util::future::join_all(requests).await;
        let want: &[u8] = if *method == "GET" { b"ok" } else { b"" };
        let bad: Vec<u16> = results
            .iter()
            .filter(|(status, body)| *status != 200 || body != want)
            .map(|(status, _)| *status)
            .collect();
        assert!(
            bad.is_empty(),
            "round {round} ({method}): {} of 100 failed: {bad:?}",
            bad.len()
        );
    }
    assert!(answered.load(std::sync::atomic::Ordering::SeqCst) >= 500);
}

// ----- 13. rate-limit keys do not depend on spelling -----

#[actix_web::test]
async fn rate_limit_keys_count_every_spelling_of_a_name_once() {
    let s = start(
        "rate_limit_password_per_user = \"3/5m\"\nrate_limit_password_per_ip = \"100/5m\"\nrate_limit_code_per_ip = \"100/1h\"\n",
    )
    .await;
    // One code per minute to an address, however it is spelled.
    let b = s.browser();
    let page = harness::send_code(&b, "email", "email", "alice@example.com", "/").await;
    assert_eq!(page.status, 302, "{}", page.body);
    for spelling in ["ALICE@example.com", " Alice@Example.COM "] {
        let page = harness::send_code(&b, "email", "email", spelling, "/").await;
        assert_eq!(page.status, 429, "{spelling}: {}", page.body);
    }
    // Invisible characters are refused with a message that says so.
    let page = harness::send_code(&b, "email", "email", "alice@example.com\u{200b}", "/").await;
    assert_eq!(page.status, 400);
    assert!(page.has("invisible characters"), "{}", page.body);
    let page = b
        .password_sign_in("ali\u{200d}ce", "alice-pass-1", "/")
        .await;
    assert_eq!(page.status, 400);
    assert!(page.has("invisible characters"), "{}", page.body);
    // Phone numbers: one number in every spelling.
    let page = harness::send_code(&b, "sms", "phone", "13800000002", "/").await;
    assert_eq!(page.status, 302, "{}", page.body);
    for spelling in [
        "008613800000002",
        "+86013800000002",
        "8613800000002",
        "+86 138 0000 0002",
    ] {
        let page = harness::send_code(&b, "sms", "phone", spelling, "/").await;
        assert_eq!(page.status, 429, "{spelling}: {}", page.body);
    }
    let sent = s.env.requests_to("/auth/v1/verification").await;
    assert_eq!(sent.len(), 2, "one code per address");

    // Password attempts: alice's user name, e-mail and phone are one account once she has
    // signed in here.
    s.signed_in("alice", "alice-pass-1").await;
    let calls = s.calls("/auth/v1/signin").await;
    let attacker = s.browser();
    for name in ["alice", "alice@example.com", "+86 138 0000 0001"] {
        let page = attacker.password_sign_in(name, "guess", "/").await;
        assert_eq!(page.status, 401, "{name}: {}", page.body);
    }
    for name in ["13800000001", "ALICE", "008613800000001"] {
        let page = attacker.password_sign_in(name, "guess", "/").await;
        assert_eq!(page.status, 429, "{name}: {}", page.body);
    }
    assert_eq!(s.calls("/auth/v1/signin").await, calls + 3);
    // Someone else's account is not affected.
    assert_eq!(
        attacker
            .password_sign_in("bob", "bob-pass-1", "/")
            .await
            .status,
        302
    );
}
