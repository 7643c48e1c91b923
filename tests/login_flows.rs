//! The hosted login pages and every sign-in method over real HTTP: the emulator, a whoami
//! upstream and the gateway on ephemeral ports, driven by a small cookie-keeping browser.
//! Assertions are on what the browser got, what the emulator recorded and what the upstream
//! saw. Every test also captures the process's logs (at trace) and searches them for the
//! passwords, codes, tokens, tickets and cookies it used.

mod common;

mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use cloudbase_gateway::emulator::EmulatorOptions;
use harness::*;
use serde_json::Value;

// ----- password -----

#[actix_web::test]
async fn password_sign_in_lands_on_the_return_url_and_the_upstream_sees_the_user() {
    let s = start("").await;
    let b = s.browser();
    let page = b.get("/dashboard?tab=1").await;
    assert_eq!(
        page.status, 302,
        "a navigation without a session goes to sign in"
    );
    let login = b.follow(page).await;
    assert_eq!(login.status, 200);
    assert!(login.has("<h1>Sign in</h1>"), "{}", login.body);
    assert_eq!(login.field("rd"), "/dashboard?tab=1");
    let done = b
        .post(
            "/__auth/sign_in/password",
            &[
                ("rd", "/dashboard?tab=1"),
                ("username", "alice"),
                ("password", "alice-pass-1"),
            ],
        )
        .await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/dashboard?tab=1");
    let session = b.session().expect("a session cookie");
    let (status, seen) = b.upstream("/dashboard?tab=1").await;
    assert_eq!(status, 200);
    let headers = &seen["headers"];
    let bearer = headers["authorization"].as_str().unwrap().to_string();
    assert!(bearer.starts_with("Bearer ey"), "{seen}");
    assert_eq!(headers["x-forwarded-preferred-username"], "alice");
    assert_eq!(headers["x-forwarded-email"], "alice@example.com");
    assert_eq!(headers["x-forwarded-user"], s.user("alice").await["uid"]);

    // A phone number is sent as the SDK sends it, and finds the same user.
    let phone = s.browser();
    let done = phone
        .password_sign_in("138 0000 0001", "alice-pass-1", "/")
        .await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(phone.userinfo().await["username"], "alice");
    let mut secrets = s.tokens(&b).await;
    secrets.extend(s.tokens(&phone).await);
    secrets.extend([
        "alice-pass-1".to_string(),
        session.clone(),
        bearer[7..].to_string(),
    ]);
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_logs_clean(&refs);
}

#[actix_web::test]
async fn password_refusals_say_what_happened() {
    let s = start("").await;
    let b = s.browser();
    let cases = [
        ("alice", "wrong-pass-9", 401, "The password is wrong."),
        ("nobody", "whatever-1", 401, "There is no account with this"),
        ("nopass", "whatever-1", 401, "This account has no password."),
        ("blocked", "blocked-pass", 403, "This account is blocked."),
        (
            "pending",
            "pending-pass",
            403,
            "This account is not activated yet.",
        ),
        ("", "x", 400, "Enter your user name and password."),
    ];
    for (user, pw, status, text) in cases {
        let page = b.password_sign_in(user, pw, "/here").await;
        assert_eq!(page.status, status, "{user}: {}", page.body);
        assert!(page.has(text), "{user}: {}", page.body);
        assert!(!page.has(pw) || pw == "x", "the password is never echoed");
        assert_eq!(page.field("username"), user, "the user name is kept");
        assert_eq!(page.field("rd"), "/here");
        assert!(b.session().is_none());
    }
    // Ten wrong passwords lock the account at CloudBase; the page gives the wait. The
    // gateway's own limit (10 per 5 minutes) would stop the eleventh attempt first, so this
    // case uses a gateway with it off.
    let s =
        start("rate_limit_password_per_user = \"off\"\nrate_limit_password_per_ip = \"off\"").await;
    let b = s.browser();
    for _ in 0..10 {
        b.password_sign_in("bob", "bad-bad-1", "/").await;
    }
    let page = b.password_sign_in("bob", "bob-pass-1", "/").await;
    assert_eq!(page.status, 429, "{}", page.body);
    assert!(
        page.has("Too many attempts. Try again in 15 minutes."),
        "{}",
        page.body
    );
    assert_eq!(page.headers.get("retry-after").unwrap(), "900");
    assert_logs_clean(&[
        "wrong-pass-9",
        "whatever-1",
        "blocked-pass",
        "bad-bad-1",
        "bob-pass-1",
    ]);
}

#[actix_web::test]
async fn password_attempts_are_rate_limited_before_cloudbase() {
    let s = start("rate_limit_password_per_user = \"3/5m\"\nrate_limit_password_per_ip = \"5/5m\"")
        .await;
    let b = s.browser();
    // A successful sign-in gives its attempt back.
    assert_eq!(
        b.password_sign_in("alice", "alice-pass-1", "/")
            .await
            .status,
        302
    );
    for _ in 0..3 {
        let p = b.password_sign_in("alice", "guess-guess", "/").await;
        assert_eq!(p.status, 401);
    }
    let before = s.calls("/auth/v1/signin").await;
    let page = b.password_sign_in("alice", "alice-pass-1", "/").await;
    assert_eq!(page.status, 429, "{}", page.body);
    assert!(
        page.has("Too many requests. Try again in 5 minutes."),
        "{}",
        page.body
    );
    let wait: u64 = page
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((290..=300).contains(&wait), "{wait}");
    assert_eq!(
        s.calls("/auth/v1/signin").await,
        before,
        "CloudBase was not called"
    );
    // Other users from the same IP still have the per-IP budget (5, of which 3 are used).
    assert_eq!(
        b.password_sign_in("bob", "x-wrong-1", "/").await.status,
        401
    );
    assert_eq!(
        b.password_sign_in("bob", "x-wrong-1", "/").await.status,
        401
    );
    let page = b.password_sign_in("bob", "bob-pass-1", "/").await;
    assert_eq!(page.status, 429, "the per-IP limit");
    // JSON callers get JSON.
    let token = b.csrf.borrow().clone();
    let mut resp = b
        .http
        .post(b.url("/__auth/sign_in/password"))
        .insert_header(("accept", "application/json"))
        .insert_header(("cookie", b.cookie_header()))
        .send_form(&[
            ("csrf", token.as_str()),
            ("username", "alice"),
            ("password", "alice-pass-1"),
        ])
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert_logs_clean(&["alice-pass-1", "guess-guess", "bob-pass-1"]);
}

// ----- codes -----

/// Sends a sign-in code from the login page's e-mail or SMS tab; the code page.
#[actix_web::test]
async fn email_code_sign_in_wrong_expired_replayed_and_rate_limited() {
    let s = start("").await;
    let b = s.browser();
    let sent = send_code(&b, "email", "email", "alice@example.com", "/inbox").await;
    assert_eq!(sent.status, 302, "{}", sent.body);
    assert!(
        sent.location.starts_with("/__auth/code?flow="),
        "{}",
        sent.location
    );
    let flow = flow_of(&sent.location);
    let page = b.get(&sent.location).await;
    assert!(page.has("alice@example.com"), "{}", page.body);
    assert!(page.has("one-time-code"));
    let code = s.env.code_for("alice@example.com").await;

    // Wrong code: the flow survives.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let page = b
        .post("/__auth/code", &[("flow", &flow), ("code", wrong)])
        .await;
    assert_eq!(page.status, 400);
    assert!(
        page.has("The code is wrong or has expired."),
        "{}",
        page.body
    );
    let page = b
        .post("/__auth/code", &[("flow", &flow), ("code", "12ab")])
        .await;
    assert!(page.has("Enter the 6-digit code."), "{}", page.body);

    let done = b
        .post("/__auth/code", &[("flow", &flow), ("code", &code)])
        .await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/inbox");
    let info = b.userinfo().await;
    assert_eq!(info["username"], "alice");
    assert_eq!(info["sub"], s.user("alice").await["uid"]);

    // Replaying the same flow and code: the flow is gone.
    let replay = b
        .post("/__auth/code", &[("flow", &flow), ("code", &code)])
        .await;
    assert_eq!(replay.status, 400);
    assert!(replay.has("expired or was already used"), "{}", replay.body);

    // A second code to the same address within a minute: 429, CloudBase not called.
    let b2 = s.browser();
    let before = s.calls("/auth/v1/verification").await;
    let again = send_code(&b2, "email", "email", "Alice@example.com", "/").await;
    assert_eq!(again.status, 429, "{}", again.body);
    assert!(again.has("A code was sent a moment ago."), "{}", again.body);
    assert_eq!(
        again.field("email"),
        "Alice@example.com",
        "the address is kept"
    );
    assert!(again.headers.get("retry-after").is_some());
    assert_eq!(s.calls("/auth/v1/verification").await, before);

    // An expired code (the emulator's clock moves past ten minutes).
    let b3 = s.browser();
    let sent = send_code(&b3, "email", "email", "bob@example.com", "/").await;
    let flow = flow_of(&sent.location);
    let code = s.env.code_for("bob@example.com").await;
    s.env.advance(601).await;
    let page = b3
        .post("/__auth/code", &[("flow", &flow), ("code", &code)])
        .await;
    assert_eq!(page.status, 400);
    assert!(
        page.has("The code is wrong or has expired."),
        "{}",
        page.body
    );
    assert!(b3.session().is_none());
    let mut secrets = s.tokens(&b).await;
    secrets.extend(s.verification_ids().await);
    secrets.extend([code.clone(), flow.clone(), b.session().unwrap()]);
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_logs_clean(&refs);
}

#[actix_web::test]
async fn sms_code_sign_in_and_the_per_ip_limit() {
    let s = start("rate_limit_code_per_ip = \"3/1h\"").await;
    let b = s.browser();
    let sent = send_code(&b, "sms", "phone", "138-0000-0002", "/").await;
    assert_eq!(sent.status, 302, "{}", sent.body);
    let flow = flow_of(&sent.location);
    let page = b.get(&sent.location).await;
    assert!(
        page.has("+86 13800000002"),
        "the number in the SDK's form: {}",
        page.body
    );
    let code = s.env.code_for("+86 13800000002").await;
    let done = b
        .post("/__auth/code", &[("flow", &flow), ("code", &code)])
        .await;
    assert_eq!(done.status, 302);
    assert_eq!(b.userinfo().await["username"], "bob");

    // A malformed number never reaches CloudBase.
    let before = s.calls("/auth/v1/verification").await;
    let page = send_code(&b, "sms", "phone", "12ab", "/").await;
    assert_eq!(page.status, 400);
    assert!(page.has("Enter a valid phone number."), "{}", page.body);
    assert_eq!(s.calls("/auth/v1/verification").await, before);

    // Three codes per hour from one IP: two more go out, the third is refused.
    assert_eq!(
        send_code(&b, "sms", "phone", "13900000011", "/")
            .await
            .status,
        302
    );
    assert_eq!(
        send_code(&b, "sms", "phone", "13900000012", "/")
            .await
            .status,
        302
    );
    let before = s.calls("/auth/v1/verification").await;
    let page = send_code(&b, "sms", "phone", "13900000013", "/").await;
    assert_eq!(page.status, 429);
    assert!(page.has("Too many requests. Try again in"), "{}", page.body);
    assert_eq!(s.calls("/auth/v1/verification").await, before);
    assert_logs_clean(&[&code, &flow]);
}

#[actix_web::test]
async fn a_code_for_an_unknown_address_registers_it() {
    let s = start("").await;
    let b = s.browser();
    let sent = send_code(&b, "email", "email", "new.person@example.com", "/").await;
    let flow = flow_of(&sent.location);
    let code = s.env.code_for("new.person@example.com").await;
    let done = b
        .post("/__auth/code", &[("flow", &flow), ("code", &code)])
        .await;
    assert_eq!(done.status, 302, "{}", done.body);
    let info = b.userinfo().await;
    assert_eq!(info["email"], "new.person@example.com");
    assert_eq!(info["anonymous"], false);
    assert_eq!(s.user("new.person@example.com").await["uid"], info["sub"]);
}

// ----- sign-up and forgot password -----

#[actix_web::test]
async fn sign_up_with_user_name_password_and_name() {
    let s = start("").await;
    let b = s.browser();
    let page = b.get("/__auth/sign_up?rd=/welcome").await;
    assert_eq!(page.status, 200);
    let taken = b
        .post(
            "/__auth/sign_up",
            &[("rd", "/welcome"), ("contact", "alice@example.com")],
        )
        .await;
    assert_eq!(taken.status, 409, "{}", taken.body);
    assert!(taken.has("already registered"), "{}", taken.body);

    let sent = b
        .post(
            "/__auth/sign_up",
            &[("rd", "/welcome"), ("contact", "carol@example.com")],
        )
        .await;
    assert_eq!(sent.status, 302, "{}", sent.body);
    let flow = flow_of(&sent.location);
    let page = b.get(&sent.location).await;
    assert!(page.has("name=\"username\"") && page.has("autocomplete=\"new-password\""));
    let code = s.env.code_for("carol@example.com").await;

    // A user name breaking the rule is caught before the code is spent.
    let page = b
        .post(
            "/__auth/code",
            &[
                ("flow", &flow),
                ("code", &code),
                ("username", "_bad"),
                ("password", "carol-pass-1"),
            ],
        )
        .await;
    assert_eq!(page.status, 400);
    assert!(page.has("A user name has 2 to 48"), "{}", page.body);
    // A taken user name: the code was right, so the form comes back without a code field.
    let page = b
        .post(
            "/__auth/code",
            &[
                ("flow", &flow),
                ("code", &code),
                ("username", "alice"),
                ("password", "carol-pass-1"),
            ],
        )
        .await;
    assert_eq!(page.status, 409, "{}", page.body);
    assert!(page.has("This user name is taken."), "{}", page.body);
    assert!(page.has("Code confirmed."), "{}", page.body);
    assert!(!page.has("carol-pass-1"));
    let verify_calls = s.calls("/auth/v1/verification/verify").await;
    let done = b
        .post(
            "/__auth/code",
            &[
                ("flow", &flow),
                ("username", "carol"),
                ("name", "Carol C"),
                ("password", "carol-pass-1"),
            ],
        )
        .await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/welcome");
    assert_eq!(
        s.calls("/auth/v1/verification/verify").await,
        verify_calls,
        "no second verify"
    );
    let user = s.user("carol").await;
    assert_eq!(user["email"], "carol@example.com");
    assert_eq!(user["name"], "Carol C");
    assert_eq!(user["has_password"], true);
    // The password works.
    let again = s.browser();
    assert_eq!(
        again
            .password_sign_in("carol", "carol-pass-1", "/")
            .await
            .status,
        302
    );
    assert_logs_clean(&["carol-pass-1", &code, &flow]);
}

#[actix_web::test]
async fn forgot_password_resets_and_signs_in() {
    let s = start("").await;
    let b = s.browser();
    let page = b.get("/__auth/forgot?rd=/back").await;
    assert_eq!(page.status, 200);
    let unknown = b
        .post(
            "/__auth/forgot",
            &[("rd", "/back"), ("contact", "ghost@example.com")],
        )
        .await;
    assert_eq!(unknown.status, 401);
    assert!(
        unknown.has("There is no account with this"),
        "{}",
        unknown.body
    );

    let sent = b
        .post(
            "/__auth/forgot",
            &[("rd", "/back"), ("contact", "alice@example.com")],
        )
        .await;
    assert_eq!(sent.status, 302, "{}", sent.body);
    let flow = flow_of(&sent.location);
    let code = s.env.code_for("alice@example.com").await;
    let page = b
        .post(
            "/__auth/code",
            &[("flow", &flow), ("code", &code), ("password", "short")],
        )
        .await;
    assert_eq!(page.status, 400);
    assert!(page.has("6 to 64 characters"), "{}", page.body);
    let page = b
        .post("/__auth/code", &[("flow", &flow), ("code", &code)])
        .await;
    assert!(page.has("Enter a password."), "{}", page.body);
    let done = b
        .post(
            "/__auth/code",
            &[
                ("flow", &flow),
                ("code", &code),
                ("password", "alice-new-pass"),
            ],
        )
        .await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/back");
    assert_eq!(b.userinfo().await["username"], "alice");
    let other = s.browser();
    assert_eq!(
        other
            .password_sign_in("alice", "alice-pass-1", "/")
            .await
            .status,
        401
    );
    assert_eq!(
        other
            .password_sign_in("alice", "alice-new-pass", "/")
            .await
            .status,
        302
    );
    // Replay.
    let replay = b
        .post(
            "/__auth/code",
            &[
                ("flow", &flow),
                ("code", &code),
                ("password", "alice-new-pass"),
            ],
        )
        .await;
    assert_eq!(replay.status, 400);
    assert!(replay.has("expired or was already used"));
    assert_logs_clean(&["alice-new-pass", "alice-pass-1", &code]);
}

// ----- anonymous and upgrade -----

#[actix_web::test]
async fn a_guest_upgrades_to_an_account_and_keeps_the_uid() {
    let s = start("").await;
    let b = s.browser();
    let page = b.get("/__auth/?rd=/shop").await;
    assert!(page.has("Continue as a guest"), "{}", page.body);
    let done = b
        .post("/__auth/sign_in/anonymous", &[("rd", "/shop")])
        .await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/shop");
    let guest = b.userinfo().await;
    assert_eq!(guest["anonymous"], true);
    let uid = guest["sub"].as_str().unwrap().to_string();
    let guest_cookie = b.session().unwrap();

    let page = b.get("/__auth/sign_up?rd=/shop").await;
    assert!(
        page.has("Everything you did as a guest stays"),
        "{}",
        page.body
    );
    let sent = b
        .post(
            "/__auth/sign_up",
            &[("rd", "/shop"), ("contact", "dora@example.com")],
        )
        .await;
    let flow = flow_of(&sent.location);
    let code = s.env.code_for("dora@example.com").await;
    let done = b
        .post(
            "/__auth/code",
            &[
                ("flow", &flow),
                ("code", &code),
                ("username", "dora"),
                ("password", "dora-pass-1"),
            ],
        )
        .await;
    assert_eq!(done.status, 302, "{}", done.body);
    let info = b.userinfo().await;
    assert_eq!(info["sub"], uid, "the uid stays");
    assert_eq!(info["anonymous"], false);
    assert_eq!(info["username"], "dora");
    assert_ne!(b.session().unwrap(), guest_cookie, "a new handle");
    let user = s.user("dora").await;
    assert_eq!(user["uid"], uid);
    assert_eq!(user["anonymous"], false);
    // The guest button disappears for a signed-in browser.
    assert!(!b.get("/__auth/").await.has("Continue as a guest"));
    let mut secrets = s.tokens(&b).await;
    secrets.extend(s.verification_ids().await);
    secrets.extend([
        "dora-pass-1".to_string(),
        code.clone(),
        guest_cookie.clone(),
    ]);
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_logs_clean(&refs);
}

// ----- tickets -----

#[actix_web::test]
async fn tickets_sign_in_by_form_and_json_and_bad_ones_are_refused() {
    let (private, public, other) = ticket_keys();
    let mut opts = EmulatorOptions::new("test-env");
    opts.ticket_keys = vec![("key-1".into(), public)];
    let s = start_with(opts, "").await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Tickets sign in once: each use below gets its own (a different iat).
    let n = std::cell::Cell::new(0u64);
    let fresh = || {
        n.set(n.get() + 1);
        make_ticket(&private, "test-env", now_ms + n.get())
    };
    let good = fresh();

    // Form, with the page's CSRF token.
    let b = s.browser();
    b.get("/__auth/").await;
    let done = b
        .post("/__auth/ticket", &[("ticket", &good), ("rd", "/app")])
        .await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/app");
    let info = b.userinfo().await;
    assert_eq!(info["name"], "dev-user-42");

    // Form without our token: refused from anywhere, our own origin included (the app behind
    // us shares it, and a plain HTML form there must not sign anyone in).
    let c = s.browser();
    let null_origin = |same: bool| {
        c.http
            .post(c.url("/__auth/ticket"))
            .insert_header(("origin", "null"))
            .insert_header((
                "sec-fetch-site",
                if same { "same-origin" } else { "same-site" },
            ))
    };
    let tokenless = [
        c.http
            .post(c.url("/__auth/ticket"))
            .insert_header(("origin", "https://evil.example")),
        c.http
            .post(c.url("/__auth/ticket"))
            .insert_header(("origin", s.url.as_str())),
        c.http.post(c.url("/__auth/ticket")),
        null_origin(false),
        null_origin(true),
    ];
    for req in tokenless {
        let t = fresh();
        let page = c
            .send(
                req,
                Some(vec![
                    ("ticket".into(), t.clone()),
                    ("rd".into(), "/x".into()),
                ]),
            )
            .await;
        assert_eq!(page.status, 403, "{}", page.body);
        assert!(page.has("Form expired"), "{}", page.body);
        assert!(c.session().is_none());
    }

    // JSON, for an app's code or backend; never from another site's page.
    let http = awc::Client::new();
    let resp = http
        .post(format!("{}/__auth/ticket", s.url))
        .insert_header(("origin", "https://evil.example"))
        .send_json(&serde_json::json!({"ticket": fresh()}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let mut resp = http
        .post(format!("{}/__auth/ticket", s.url))
        .send_json(&serde_json::json!({"ticket": fresh(), "rd": "https://evil.example/"}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.starts_with("cbgw_session=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["sub"], info["sub"],
        "the same custom uid, the same user"
    );
    assert_eq!(body["rd"], "/", "the return URL is validated");
    assert!(body.get("access_token").is_none() && !body.to_string().contains("eyJ"));

    // Used, forged, for another env, expired, garbage: refused, CloudBase judges the first
    // four.
    let cases = [
        ("used", good.clone()),
        ("forged", make_ticket(&other, "test-env", now_ms)),
        ("other env", make_ticket(&private, "prod-env", now_ms)),
        (
            "expired",
            make_ticket(&private, "test-env", now_ms - 11 * 60 * 1000),
        ),
        ("garbage", "not-a-ticket".to_string()),
    ];
    for (what, t) in &cases {
        let mut resp = http
            .post(format!("{}/__auth/ticket", s.url))
            .send_json(&serde_json::json!({ "ticket": t }))
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let raw = resp.body().await.unwrap();
        let body: Value = serde_json::from_slice(&raw)
            .unwrap_or_else(|_| panic!("{what}: {status} {}", String::from_utf8_lossy(&raw)));
        assert!(matches!(status, 400 | 401), "{what}: {status} {body}");

        assert_eq!(body["error"], "ticket", "{what}: {body}");
        let page = b.post("/__auth/ticket", &[("ticket", t)]).await;
        assert!(matches!(page.status, 400 | 401), "{what}");
        assert!(
            page.has(
                "The sign-in ticket is invalid, expired, already used or for another environment."
            ),
            "{what}: {}",
            page.body
        );
    }
    let mut all: Vec<&str> = vec![&good];
    all.extend(cases.iter().map(|(_, t)| t.as_str()));
    // Tickets are long: search for their signatures.
    let sigs: Vec<String> = all
        .iter()
        .filter_map(|t| t.rsplit('.').next().map(str::to_string))
        .collect();
    let sig_refs: Vec<&str> = sigs.iter().map(String::as_str).collect();
    assert_logs_clean(&sig_refs);
}

// ----- CSRF and flow ids -----

#[actix_web::test]
async fn every_form_refuses_a_missing_or_wrong_csrf_token() {
    let s = start("").await;
    let b = s.browser();
    b.get("/__auth/").await;
    let posts = [
        "/__auth/sign_in/password",
        "/__auth/sign_in/email",
        "/__auth/sign_in/sms",
        "/__auth/sign_in/anonymous",
        "/__auth/sign_up",
        "/__auth/forgot",
        "/__auth/code",
        "/__auth/code/resend",
        "/__auth/sign_out",
        "/__auth/account/sudo",
        "/__auth/account/change",
        "/__auth/account/unlink",
        "/__auth/ticket",
    ];
    let before = s
        .env
        .get_json("/__emulator/requests")
        .await
        .as_array()
        .unwrap()
        .len();
    for path in posts {
        let fields = [
            ("username", "alice"),
            ("password", "alice-pass-1"),
            ("email", "alice@example.com"),
            ("phone", "13800000001"),
            ("contact", "alice@example.com"),
            ("change", "email"),
        ];
        let missing = b.post_raw(path, &fields).await;
        assert_eq!(missing.status, 403, "{path} without a token");
        assert!(missing.has("Form expired"), "{path}: {}", missing.body);
        let mut wrong = fields.to_vec();
        wrong.push(("csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
        assert_eq!(
            b.post_raw(path, &wrong).await.status,
            403,
            "{path} with a wrong token"
        );
        // Our own origin does not stand in for the token: the app behind us shares it.
        let own_origin = b
            .send(
                b.http
                    .post(b.url(path))
                    .insert_header(("origin", s.url.as_str())),
                Some(
                    wrong
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            )
            .await;
        if path == "/__auth/ticket" {
            // A ticket post without our token is allowed from our origin (documented): the
            // ticket itself is the credential, and it is missing here.
            assert_ne!(own_origin.status, 302, "{path}: {}", own_origin.body);
        } else {
            assert_eq!(
                own_origin.status, 403,
                "{path} from our origin, wrong token"
            );
        }
        // Another browser's token.
        let other = s.browser();
        other.get("/__auth/").await;
        let token = other.csrf.borrow().clone();
        let mut foreign = fields.to_vec();
        foreign.push(("csrf", &token));
        assert_eq!(
            b.post_raw(path, &foreign).await.status,
            403,
            "{path} with another browser's token"
        );
    }
    assert!(b.session().is_none());
    let after = s
        .env
        .get_json("/__emulator/requests")
        .await
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, before, "nothing reached CloudBase");
}

#[actix_web::test]
async fn a_form_whose_csrf_cookie_another_tab_replaced_is_refused_with_a_way_back_to_it() {
    let s = start("").await;
    let b = s.browser();
    // Tab A shows the login page; tab B, opened at the same moment in this fresh browser,
    // got its own CSRF cookie, which replaced A's.
    b.get("/__auth/?method=password&rd=/a").await;
    let tab_a = b.csrf.borrow().clone();
    b.jar.borrow_mut().remove("cbgw_session_csrf");
    b.get("/__auth/").await;
    assert_ne!(*b.csrf.borrow(), tab_a);
    let fields: Vec<(String, String)> = [
        ("csrf", tab_a.as_str()),
        ("rd", "/a"),
        ("username", "alice"),
        ("password", "alice-pass-1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // Even from our own origin the stale token is refused: a plain HTML form in the app
    // behind us (same origin, user content) must not be able to post without the token.
    let refused = b
        .send(
            b.http
                .post(b.url("/__auth/sign_in/password"))
                .insert_header(("origin", s.url.as_str())),
            Some(fields.clone()),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.has("Form expired"), "{}", refused.body);
    assert!(b.session().is_none());
    // Its link opens the same form again, for the same return URL, with a token that works.
    let back = "/__auth/?method=password&rd=%2Fa";
    assert!(
        refused
            .body
            .replace("&#38;", "&")
            .contains(&format!("href=\"{back}\"")),
        "{}",
        refused.body
    );
    let form = b.get(back).await;
    assert!(form.has("name=\"password\""), "{}", form.body);
    let done = b
        .post(
            "/__auth/sign_in/password",
            &[
                ("rd", "/a"),
                ("username", "alice"),
                ("password", "alice-pass-1"),
            ],
        )
        .await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/a");

    // The way back names each form's own page: a code flow's page keeps its flow id; garbage
    // in the fields never reaches the link.
    let c = s.browser();
    c.get("/__auth/").await;
    let page = c
        .post_raw(
            "/__auth/code",
            &[("csrf", "stale"), ("flow", "abc123"), ("code", "1")],
        )
        .await;
    assert_eq!(page.status, 403);
    assert!(
        page.has("href=\"/__auth/code?flow=abc123\""),
        "{}",
        page.body
    );
    let page = c
        .post_raw("/__auth/code", &[("csrf", "stale"), ("flow", "\"><x")])
        .await;
    assert!(page.has("href=\"/__auth/?rd=%2F\""), "{}", page.body);
    let page = c
        .post_raw(
            "/__auth/sign_up",
            &[("csrf", "stale"), ("rd", "https://evil.example/")],
        )
        .await;
    assert!(page.has("href=\"/__auth/sign_up?rd=%2F\""), "{}", page.body);
}

#[actix_web::test]
async fn a_missing_unknown_or_foreign_flow_gets_the_start_again_page() {
    let s = start("").await;
    let b = s.browser();
    let sent = send_code(&b, "email", "email", "alice@example.com", "/").await;
    let flow = flow_of(&sent.location);
    let code = s.env.code_for("alice@example.com").await;
    for path in [
        "/__auth/code".to_string(),
        "/__auth/code?flow=".to_string(),
        "/__auth/code?flow=nope".to_string(),
        format!("/__auth/code?flow={}", "A".repeat(43)),
    ] {
        let page = b.get(&path).await;
        assert_eq!(page.status, 400, "{path}");
        assert!(page.has("Start again"), "{path}: {}", page.body);
        assert!(page.has("href=\"/__auth/\""), "a link back");
    }
    let page = b
        .post("/__auth/code", &[("flow", "unknown"), ("code", &code)])
        .await;
    assert_eq!(page.status, 400);
    assert!(page.has("expired or was already used"));
    // Another browser cannot use this browser's flow, even with its own valid CSRF token.
    let thief = s.browser();
    thief.get("/__auth/").await;
    let page = thief.get(&format!("/__auth/code?flow={flow}")).await;
    assert_eq!(page.status, 400);
    let page = thief
        .post("/__auth/code", &[("flow", &flow), ("code", &code)])
        .await;
    assert_eq!(page.status, 400);
    assert!(thief.session().is_none());
    // The owner still can.
    let done = b
        .post("/__auth/code", &[("flow", &flow), ("code", &code)])
        .await;
    assert_eq!(done.status, 302);
}

// ----- account -----

#[actix_web::test]
async fn account_changes_the_email_with_password_sudo() {
    let s = start("").await;
    let b = s.browser();
    assert_eq!(
        b.password_sign_in("alice", "alice-pass-1", "/")
            .await
            .status,
        302
    );
    let page = b.get("/__auth/account").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.has("alice@example.com") && page.has("+86 13800000001"),
        "{}",
        page.body
    );
    let page = b.get("/__auth/account/confirm?change=email").await;
    assert!(page.has("Confirm it"), "{}", page.body);
    let wrong = b
        .post(
            "/__auth/account/sudo",
            &[
                ("change", "email"),
                ("method", "password"),
                ("password", "nope-nope"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.has("The password is wrong."));
    let ok = b
        .post(
            "/__auth/account/sudo",
            &[
                ("change", "email"),
                ("method", "password"),
                ("password", "alice-pass-1"),
            ],
        )
        .await;
    assert_eq!(ok.status, 302, "{}", ok.body);
    assert!(ok.location.starts_with("/__auth/account/change?flow="));
    let change_flow = flow_of(&ok.location);
    let page = b.get(&ok.location).await;
    assert!(page.has("New e-mail address"), "{}", page.body);
    let bad = b
        .post(
            "/__auth/account/change",
            &[("flow", &change_flow), ("contact", "not-mail")],
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.has("Enter a valid e-mail address."));
    let taken = b
        .post(
            "/__auth/account/change",
            &[("flow", &change_flow), ("contact", "bob@example.com")],
        )
        .await;
    assert_eq!(
        taken.status, 302,
        "the code goes out; the conflict shows at the end"
    );
    let flow = flow_of(&taken.location);
    let code = s.env.code_for("bob@example.com").await;
    let page = b
        .post("/__auth/code", &[("flow", &flow), ("code", &code)])
        .await;
    assert_eq!(page.status, 409, "{}", page.body);
    assert!(page.has("belongs to another account"), "{}", page.body);

    // Again with a free address.
    let ok = b
        .post(
            "/__auth/account/sudo",
            &[
                ("change", "email"),
                ("method", "password"),
                ("password", "alice-pass-1"),
            ],
        )
        .await;
    let change_flow = flow_of(&ok.location);
    let sent = b
        .post(
            "/__auth/account/change",
            &[("flow", &change_flow), ("contact", "alice@new.example")],
        )
        .await;
    assert_eq!(sent.status, 302, "{}", sent.body);
    let flow = flow_of(&sent.location);
    let code = s.env.code_for("alice@new.example").await;
    let done = b
        .post("/__auth/code", &[("flow", &flow), ("code", &code)])
        .await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/__auth/account?done=email");
    let page = b.get(&done.location).await;
    assert!(page.has("Your e-mail address is updated."), "{}", page.body);
    assert!(page.has("alice@new.example"));
    assert_eq!(s.user("alice").await["email"], "alice@new.example");
    assert_eq!(
        b.userinfo().await["email"],
        "alice@new.example",
        "the session follows"
    );
    let (_, seen) = b.upstream("/").await;
    assert_eq!(seen["headers"]["x-forwarded-email"], "alice@new.example");
    // The elevated flow is single use.
    let again = b
        .post(
            "/__auth/account/change",
            &[("flow", &change_flow), ("contact", "x@y.example")],
        )
        .await;
    assert_eq!(again.status, 400);
    assert_logs_clean(&["alice-pass-1", "nope-nope", &code, &change_flow]);
}

#[actix_web::test]
async fn a_user_without_password_sets_one_after_code_sudo() {
    let s = start("").await;
    let b = s.browser();
    let sent = send_code(&b, "email", "email", "nopass@example.com", "/").await;
    let code = s.env.code_for("nopass@example.com").await;
    b.post(
        "/__auth/code",
        &[("flow", &flow_of(&sent.location)), ("code", &code)],
    )
    .await;
    assert_eq!(b.userinfo().await["username"], "nopass");
    let page = b.get("/__auth/account/confirm?change=password").await;
    assert!(
        !page.has("name=\"password\""),
        "no password to confirm with: {}",
        page.body
    );
    assert!(page.has("nopass@example.com"));
    // Sending another code to the same address within the minute is refused by the limit.
    let limited = b
        .post(
            "/__auth/account/sudo",
            &[("change", "password"), ("method", "code")],
        )
        .await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    let s = start("rate_limit_code_per_target = \"off\"").await;
    let b = s.browser();
    let sent = send_code(&b, "email", "email", "nopass@example.com", "/").await;
    let code = s.env.code_for("nopass@example.com").await;
    b.post(
        "/__auth/code",
        &[("flow", &flow_of(&sent.location)), ("code", &code)],
    )
    .await;
    b.get("/__auth/account/confirm?change=password").await;
    let sent = b
        .post(
            "/__auth/account/sudo",
            &[("change", "password"), ("method", "code")],
        )
        .await;
    assert_eq!(sent.status, 302, "{}", sent.body);
    let flow = flow_of(&sent.location);
    let page = b.get(&sent.location).await;
    assert!(page.has("Confirm it"), "{}", page.body);
    let code = s.env.code_for("nopass@example.com").await;
    let elevated = b
        .post("/__auth/code", &[("flow", &flow), ("code", &code)])
        .await;
    assert_eq!(elevated.status, 302, "{}", elevated.body);
    assert!(elevated
        .location
        .starts_with("/__auth/account/change?flow="));
    let change_flow = flow_of(&elevated.location);
    b.get(&elevated.location).await;
    let short = b
        .post(
            "/__auth/account/change",
            &[("flow", &change_flow), ("new_password", "abc")],
        )
        .await;
    assert_eq!(short.status, 400);
    let done = b
        .post(
            "/__auth/account/change",
            &[("flow", &change_flow), ("new_password", "nopass-now-1")],
        )
        .await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/__auth/account?done=password");
    assert_eq!(s.user("nopass").await["has_password"], true);
    let other = s.browser();
    assert_eq!(
        other
            .password_sign_in("nopass", "nopass-now-1", "/")
            .await
            .status,
        302
    );
    assert_logs_clean(&["nopass-now-1", &code]);
}

#[actix_web::test]
async fn linked_providers_are_listed_and_unlinked() {
    let s = start("").await;
    // Link a GitHub identity to alice directly at the emulator (the provider redirect flow of
    // the gateway is another issue): sign in, consent, exchange, bind.
    let ctx = common::ctx();
    let creds = s
        .env
        .client
        .signin(&ctx, &common::pw("alice", "alice-pass-1"))
        .await
        .unwrap();
    let uri = s
        .env
        .client
        .provider_uri(
            &ctx,
            &cloudbase_gateway::cloudbase::types::ProviderUriRequest {
                provider_id: "github".into(),
                redirect_uri: "http://127.0.0.1/cb".into(),
                state: "st".into(),
                scope: None,
            },
        )
        .await
        .unwrap();
    let consent = awc::Client::builder().disable_redirects().finish();
    let q: BTreeMap<String, String> = url::Url::parse(&uri.uri)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    let resp = consent
        .post(s.env.url("/__emulator/oauth/authorize"))
        .send_form(&[
            ("provider_id", q["provider_id"].as_str()),
            ("redirect_uri", q["redirect_uri"].as_str()),
            ("state", q["state"].as_str()),
            ("login", "alice-gh"),
            ("decision", "approve"),
        ])
        .await
        .unwrap();
    let back = resp.headers().get("location").unwrap().to_str().unwrap();
    let code = url::Url::parse(back)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let pt = s
        .env
        .client
        .provider_token(
            &ctx,
            &cloudbase_gateway::cloudbase::types::ProviderTokenRequest {
                provider_id: "github".into(),
                provider_redirect_uri: "http://127.0.0.1/cb".into(),
                provider_code: cloudbase_gateway::secret::Secret::new(code),
            },
        )
        .await
        .unwrap();
    s.env
        .client
        .bind_provider(&ctx, &creds.access_token, &pt.provider_token)
        .await
        .unwrap();

    let b = s.browser();
    b.password_sign_in("alice", "alice-pass-1", "/").await;
    let page = b.get("/__auth/account").await;
    assert!(page.has("github (alice-gh)"), "{}", page.body);
    assert!(
        page.has("name=\"provider\" value=\"github\""),
        "{}",
        page.body
    );
    assert!(
        !page.has("value=\"google\""),
        "only linked ones can be unlinked"
    );
    let done = b
        .post("/__auth/account/unlink", &[("provider", "github")])
        .await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/__auth/account?done=unlinked");
    let providers = &s.user("alice").await["providers"];
    assert!(providers.as_array().unwrap().is_empty(), "{providers}");
    let again = b
        .post("/__auth/account/unlink", &[("provider", "github")])
        .await;
    assert_eq!(again.status, 404);
    assert!(again.has("not linked to your account"), "{}", again.body);
}

#[actix_web::test]
async fn the_account_pages_need_a_session() {
    let s = start("").await;
    let b = s.browser();
    let page = b.get("/__auth/account").await;
    assert_eq!(page.status, 302);
    assert_eq!(page.location, "/__auth/?rd=%2F__auth%2Faccount");
    let mut resp = b
        .http
        .get(b.url("/__auth/account"))
        .insert_header(("accept", "application/json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");
}

// ----- the page itself -----

#[actix_web::test]
async fn languages_branding_and_the_hosted_page_query() {
    let s = start("brand_name = \"Acme Portal\"\nbrand_color = \"#aa3300\"\nbrand_logo_url = \"https://cdn.example/logo.svg\"").await;
    let b = s.browser();
    *b.lang.borrow_mut() = Some("zh-CN,zh;q=0.9,en;q=0.5");
    let page = b.get("/__auth/").await;
    assert!(page.has("<html lang=\"zh-CN\">"), "{}", page.body);
    assert!(page.has("<h1>登录</h1>"));
    assert!(
        page.has("Acme Portal")
            && page.has("--brand:#aa3300")
            && page.has("https://cdn.example/logo.svg")
    );
    assert!(page.has("hreflang=\"en\""));
    // ?lang= wins and is remembered.
    let page = b.get("/__auth/?lang=en").await;
    assert!(page.has("<h1>Sign in</h1>"), "{}", page.body);
    assert_eq!(b.cookie("cbgw_session_lang").as_deref(), Some("en"));
    let page = b.get("/__auth/sign_up").await;
    assert!(page.has("<h1>Create an account</h1>"), "{}", page.body);
    // Errors are in the page's language too.
    let page = b.password_sign_in("alice", "wrong-wrong", "/").await;
    assert!(page.has("The password is wrong."));
    let page = b.get("/__auth/code?flow=x&lang=zh-CN").await;
    assert!(page.has("请重新开始"), "{}", page.body);
    b.get("/__auth/?lang=zh-CN").await;
    let page = b.password_sign_in("alice", "wrong-wrong", "/").await;
    assert!(page.has("密码错误。"), "{}", page.body);

    // CloudBase's hosted-page query: toDefaultLoginPage({redirect_uri}) lands here.
    let back = format!("{}/orders?id=7", s.url);
    let q = format!(
        "/__auth/?app_id=app-1&env_id=test-env&client_id=test-env&config_version=env&redirect_uri={}",
        url::form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>()
    );
    let page = b.get(&q).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.field("rd"), back);
    let done = b
        .post(
            "/__auth/sign_in/password",
            &[
                ("rd", &back),
                ("username", "bob"),
                ("password", "bob-pass-1"),
            ],
        )
        .await;
    assert_eq!(done.location, back);
    let page = b.get("/__auth/?env_id=prod-env&redirect_uri=/").await;
    assert_eq!(page.status, 400);
    assert!(page.has("环境") || page.has("environment"), "{}", page.body);
    // An open redirect through redirect_uri falls back to /.
    let page = b.get("/__auth/?redirect_uri=https://evil.example/").await;
    assert_eq!(page.field("rd"), "/");
    // The stylesheet is served; the page works without it and without scripts.
    let css = b.get("/__auth/static/gateway.css").await;
    assert_eq!(css.status, 200);
    assert!(css.body.contains("--brand"));
    assert!(!page.has("<script"));
}

#[actix_web::test]
async fn methods_not_enabled_are_neither_shown_nor_accepted() {
    let s = start("sign_in_methods = [\"password\"]\nsign_up = false").await;
    let b = s.browser();
    let page = b.get("/__auth/?method=email").await;
    assert!(
        page.has("name=\"password\""),
        "the password form instead: {}",
        page.body
    );
    for absent in [
        "sign_in/email",
        "sign_in/sms",
        "Continue as a guest",
        "/__auth/sign_up",
        "/__auth/forgot",
    ] {
        assert!(!page.has(absent), "{absent} is not shown");
    }
    let before = s.calls("/auth/v1/verification").await;
    let refused = b
        .post("/__auth/sign_in/email", &[("email", "alice@example.com")])
        .await;
    assert_eq!(refused.status, 403);
    assert!(
        refused.has("This sign-in method is not enabled."),
        "{}",
        refused.body
    );
    assert_eq!(b.post("/__auth/sign_in/anonymous", &[]).await.status, 403);
    assert_eq!(b.get("/__auth/sign_up").await.status, 404);
    assert_eq!(b.get("/__auth/forgot").await.status, 404);
    assert_eq!(s.calls("/auth/v1/verification").await, before);
    assert_eq!(s.calls("/auth/v1/signin/anonymously").await, 0);
}

#[actix_web::test]
async fn sign_out_without_a_return_url_shows_the_signed_out_page() {
    let s = start("").await;
    let b = s.browser();
    b.password_sign_in("alice", "alice-pass-1", "/").await;
    let page = b.get("/__auth/account").await;
    let out = b.post("/__auth/sign_out", &[]).await;
    assert_eq!(out.status, 302, "{}", page.body);
    assert_eq!(out.location, "/__auth/signed_out");
    assert!(b.session().is_none());
    let page = b.get(&out.location).await;
    assert!(page.has("You are signed out") && page.has("Sign in again"));
    assert_eq!(b.get("/anything").await.status, 302, "signed out for real");
}

/// For each code flow (SMS sign-in, sign-up, forgot password): a second code to the same target
/// within the minute is refused before CloudBase, an expired code is refused, and a used flow
/// cannot be replayed.
#[actix_web::test]
async fn every_code_flow_expires_refuses_replays_and_is_rate_limited() {
    let s = start("").await;
    struct Case {
        name: &'static str,
        start: &'static str,
        post: &'static str,
        field: &'static str,
        target: &'static str,
        outbox: &'static str,
        extra: &'static [(&'static str, &'static str)],
    }
    let cases = [
        Case {
            name: "sms",
            start: "/__auth/?method=sms",
            post: "/__auth/sign_in/sms",
            field: "phone",
            target: "13800000002",
            outbox: "+86 13800000002",
            extra: &[],
        },
        Case {
            name: "sign-up",
            start: "/__auth/sign_up",
            post: "/__auth/sign_up",
            field: "contact",
            target: "erin@example.com",
            outbox: "erin@example.com",
            extra: &[("username", "erin"), ("password", "erin-pass-1")],
        },
        Case {
            name: "forgot",
            start: "/__auth/forgot",
            post: "/__auth/forgot",
            field: "contact",
            target: "bob@example.com",
            outbox: "bob@example.com",
            extra: &[("password", "bob-new-pass")],
        },
    ];
    for c in &cases {
        let b = s.browser();
        b.get(c.start).await;
        // Expired: the code is older than ten minutes at CloudBase.
        let sent = b.post(c.post, &[(c.field, c.target)]).await;
        assert_eq!(sent.status, 302, "{}: {}", c.name, sent.body);
        let flow = flow_of(&sent.location);
        let code = s.env.code_for(c.outbox).await;
        s.env.advance(601).await;
        let mut fields = vec![("flow", flow.as_str()), ("code", code.as_str())];
        fields.extend_from_slice(c.extra);
        let page = b.post("/__auth/code", &fields).await;
        assert_eq!(page.status, 400, "{}: {}", c.name, page.body);
        assert!(page.has("The code is wrong or has expired."), "{}", c.name);
        assert!(b.session().is_none());

        // A new code at once for the same target: refused by the per-target limit, and
        // CloudBase is not called.
        let before = s.calls("/auth/v1/verification").await;
        let limited = b.post("/__auth/code/resend", &[("flow", &flow)]).await;
        assert_eq!(limited.status, 429, "{}: {}", c.name, limited.body);
        assert!(limited.has("A code was sent a moment ago."), "{}", c.name);
        let limited = b.post(c.post, &[(c.field, c.target)]).await;
        assert_eq!(limited.status, 429, "{}", c.name);
        assert_eq!(s.calls("/auth/v1/verification").await, before, "{}", c.name);

        // A minute later a new code goes out for the same flow, and works once.
        s.clock.advance(Duration::from_secs(61));
        let resent = b.post("/__auth/code/resend", &[("flow", &flow)]).await;
        assert_eq!(resent.status, 302, "{}: {}", c.name, resent.body);
        let page = b.get(&resent.location).await;
        assert!(page.has("A new code is on its way."), "{}", c.name);
        let code = s.env.code_for(c.outbox).await;
        let mut fields = vec![("flow", flow.as_str()), ("code", code.as_str())];
        fields.extend_from_slice(c.extra);
        let done = b.post("/__auth/code", &fields).await;
        assert_eq!(done.status, 302, "{}: {}", c.name, done.body);
        assert!(b.session().is_some(), "{}", c.name);
        let replay = b.post("/__auth/code", &fields).await;
        assert_eq!(replay.status, 400, "{}", c.name);
        assert!(replay.has("expired or was already used"), "{}", c.name);
        s.clock.advance(Duration::from_secs(61));
    }
    assert_logs_clean(&["erin-pass-1", "bob-new-pass"]);
}

/// A wrong-password attempt carrying `X-Forwarded-For: ip`; the status.
async fn attempt(b: &Browser, ip: &str) -> u16 {
    let token = b.csrf.borrow().clone();
    let f = vec![
        ("csrf".to_string(), token),
        ("username".to_string(), "alice".to_string()),
        ("password".to_string(), "wrong-pass-x".to_string()),
    ];
    b.send(
        b.http
            .post(b.url("/__auth/sign_in/password"))
            .insert_header(("x-forwarded-for", ip)),
        Some(f),
    )
    .await
    .status
}

#[actix_web::test]
async fn rate_limits_key_on_forwarded_addresses_from_trusted_proxies_only() {
    // Untrusted peer: X-Forwarded-For is the client's own claim and changes nothing.
    let s = start("rate_limit_password_per_ip = \"2/5m\"\nrate_limit_password_per_user = \"off\"")
        .await;
    let b = s.browser();
    b.get("/__auth/").await;
    assert_eq!(attempt(&b, "1.1.1.1").await, 401);
    assert_eq!(attempt(&b, "2.2.2.2").await, 401);
    assert_eq!(
        attempt(&b, "3.3.3.3").await,
        429,
        "a spoofed address does not escape the limit"
    );

    // Trusted proxy: each forwarded client has its own budget.
    let s = start("rate_limit_password_per_ip = \"2/5m\"\nrate_limit_password_per_user = \"off\"\ntrusted_proxies = [\"127.0.0.1\"]").await;
    let b = s.browser();
    b.get("/__auth/").await;
    assert_eq!(attempt(&b, "1.1.1.1").await, 401);
    assert_eq!(attempt(&b, "1.1.1.1").await, 401);
    assert_eq!(attempt(&b, "1.1.1.1").await, 429);
    assert_eq!(
        attempt(&b, "9.9.9.9, 2.2.2.2").await,
        401,
        "another client behind the proxy"
    );
    assert_eq!(
        attempt(&b, "1.1.1.1, 2.2.2.2").await,
        401,
        "the right-most untrusted entry counts"
    );
    assert_eq!(attempt(&b, "2.2.2.2").await, 429);
}

#[actix_web::test]
async fn with_sign_up_off_a_code_never_creates_an_account() {
    let s = start("sign_up = false").await;
    let b = s.browser();
    let page = send_code(&b, "email", "email", "stranger@example.com", "/").await;
    assert_eq!(page.status, 401, "{}", page.body);
    assert!(page.has("There is no account with this"), "{}", page.body);
    assert!(s.user("stranger@example.com").await.is_null());
    // Existing accounts still sign in with a code.
    let sent = send_code(&b, "email", "email", "bob@example.com", "/").await;
    assert_eq!(sent.status, 302, "{}", sent.body);
    let code = s.env.code_for("bob@example.com").await;
    let done = b
        .post(
            "/__auth/code",
            &[("flow", &flow_of(&sent.location)), ("code", &code)],
        )
        .await;
    assert_eq!(done.status, 302);
    assert_eq!(b.userinfo().await["username"], "bob");
}

#[actix_web::test]
async fn guests_are_rate_limited_per_ip() {
    let s = start("rate_limit_anonymous_per_ip = \"2/1h\"").await;
    for _ in 0..2 {
        let b = s.browser();
        b.get("/__auth/").await;
        assert_eq!(
            b.post("/__auth/sign_in/anonymous", &[("rd", "/")])
                .await
                .status,
            302
        );
    }
    let b = s.browser();
    b.get("/__auth/").await;
    let page = b.post("/__auth/sign_in/anonymous", &[("rd", "/")]).await;
    assert_eq!(page.status, 429, "{}", page.body);
    assert!(page.headers.get("retry-after").is_some());
    assert_eq!(s.calls("/auth/v1/signin/anonymously").await, 2);
}

#[actix_web::test]
async fn a_form_posted_from_another_origin_is_refused_even_with_a_valid_token() {
    let s = start("").await;
    let b = s.browser();
    b.get("/__auth/").await;
    let f = vec![
        ("csrf".to_string(), b.csrf.borrow().clone()),
        ("username".to_string(), "alice".to_string()),
        ("password".to_string(), "alice-pass-1".to_string()),
    ];
    let page = b
        .send(
            b.http
                .post(b.url("/__auth/sign_in/password"))
                .insert_header(("origin", "https://evil.example")),
            Some(f.clone()),
        )
        .await;
    assert_eq!(page.status, 403);
    assert!(b.session().is_none());
    let page = b
        .send(
            b.http
                .post(b.url("/__auth/sign_in/password"))
                .insert_header(("origin", s.url.as_str())),
            Some(f),
        )
        .await;
    assert_eq!(page.status, 302, "our own origin: {}", page.body);
}

#[actix_web::test]
async fn account_changes_the_phone_and_sign_out_ends_flows_in_progress() {
    let s = start("").await;
    let b = s.browser();
    b.password_sign_in("bob", "bob-pass-1", "/").await;
    b.get("/__auth/account/confirm?change=phone").await;
    let ok = b
        .post(
            "/__auth/account/sudo",
            &[
                ("change", "phone"),
                ("method", "password"),
                ("password", "bob-pass-1"),
            ],
        )
        .await;
    assert_eq!(ok.status, 302, "{}", ok.body);
    let page = b.get(&ok.location).await;
    assert!(
        page.has("New phone number") && page.has("type=\"tel\""),
        "{}",
        page.body
    );
    let sent = b
        .post(
            "/__auth/account/change",
            &[
                ("flow", &flow_of(&ok.location)),
                ("contact", "139 1234 5678"),
            ],
        )
        .await;
    assert_eq!(sent.status, 302, "{}", sent.body);
    let flow = flow_of(&sent.location);
    let code = s.env.code_for("+86 13912345678").await;
    let done = b
        .post("/__auth/code", &[("flow", &flow), ("code", &code)])
        .await;
    assert_eq!(done.location, "/__auth/account?done=phone", "{}", done.body);
    assert_eq!(s.user("bob").await["phone_number"], "+86 13912345678");
    assert_eq!(b.userinfo().await["phone_number"], "+86 13912345678");

    // A code flow started before signing out cannot be finished after it.
    let ok = b
        .post(
            "/__auth/account/sudo",
            &[
                ("change", "email"),
                ("method", "password"),
                ("password", "bob-pass-1"),
            ],
        )
        .await;
    let elevated = flow_of(&ok.location);
    b.get("/__auth/sign_out").await;
    b.post("/__auth/sign_out", &[]).await;
    assert!(
        b.cookie("cbgw_session_csrf").is_none(),
        "the CSRF cookie is cleared"
    );
    b.password_sign_in("bob", "bob-pass-1", "/").await;
    let page = b
        .get(&format!("/__auth/account/change?flow={elevated}"))
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
}
