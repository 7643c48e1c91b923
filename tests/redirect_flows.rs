//! The redirect flows over real HTTP against the emulator's consent and captcha pages:
//! provider sign-in, declining, linking a provider to an account, captchas in both modes
//! (during password sign-in and code sending, solved, cancelled, refused again), and attacks on
//! the sealed `state`. Assertions are on what the browser got, what the emulator recorded and
//! what the upstream saw; the logs are searched for every secret used.

mod common;
mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use harness::*;
use serde_json::{json, Value};

const PROVIDERS: &str = "providers = [\"github=GitHub\", \"wx_open\"]\n";

/// Starts a provider sign-in from the login page's button; the redirect to the consent page.
async fn start_provider(b: &Browser, provider: &str, rd: &str) -> Page {
    let login = b.get(&format!("/__auth/?rd={}", enc(rd))).await;
    let href = format!("/__auth/start?provider={provider}&#38;rd={}", enc(rd));
    assert!(login.has(&href), "a button for {provider}: {}", login.body);
    b.get(&format!("/__auth/start?provider={provider}&rd={}", enc(rd)))
        .await
}

/// A provider flow up to the callback URL (not followed): the URL and its query.
async fn callback_url(s: &Setup, b: &Browser, rd: &str) -> (String, BTreeMap<String, String>) {
    let start = start_provider(b, "github", rd).await;
    assert_eq!(start.status, 302, "{}", start.body);
    assert!(
        start.location.starts_with(&s.env.emu.url),
        "{}",
        start.location
    );
    let back = consent(b, &start.location, "approve").await;
    assert_eq!(back.status, 302);
    assert!(back
        .location
        .starts_with(&format!("{}/__auth/callback?", s.url)));
    let q = query(&back.location);
    (back.location, q)
}

fn is_state_page(p: &Page) -> bool {
    p.status == 400 && p.has("This sign-in link expired or was already used — start again.")
}

// ----- providers -----

#[actix_web::test]
async fn provider_sign_in_lands_on_the_return_url_with_a_session() {
    let s = start(PROVIDERS).await;
    let b = s.browser();
    let login = b.get("/__auth/?rd=%2Fdash").await;
    assert!(
        login.has(">GitHub</a>") && login.has(">WeChat</a>"),
        "{}",
        login.body
    );
    let start = start_provider(&b, "github", "/dash?x=1").await;
    assert_eq!(start.status, 302);
    let q = query(&start.location);
    assert_eq!(q["provider_id"], "github");
    assert_eq!(q["redirect_uri"], format!("{}/__auth/callback", s.url));
    let state = q["state"].clone();
    assert!(
        !state.contains("dash") && state.len() > 100,
        "the state is sealed: {state}"
    );
    let back = consent(&b, &start.location, "approve").await;
    let cb = query(&back.location);
    assert_eq!(cb["state"], state);
    let code = cb["code"].clone();
    let done = b.get(&back.location).await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/dash?x=1");
    assert!(b.session().is_some());
    let (status, seen) = b.upstream("/dash").await;
    assert_eq!(status, 200);
    assert!(seen["headers"]["authorization"]
        .as_str()
        .unwrap()
        .starts_with("Bearer ey"));
    let user = b.userinfo().await;
    let sub = user["sub"].as_str().unwrap().to_string();
    let users = s.env.get_json("/__emulator/users").await;
    let linked = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["sub"] == sub || u["uid"] == sub)
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        linked.to_string().contains("github-octocat"),
        "the emulator made a user for the github identity: {linked}"
    );
    assert_eq!(s.calls("/auth/v1/provider/token").await, 1);
    assert_eq!(s.calls("/auth/v1/signin/with/provider").await, 1);
    // The state is spent.
    let again = b.get(&back.location).await;
    assert!(is_state_page(&again), "{} {}", again.status, again.body);
    let mut secrets = vec![code.as_str(), state.as_str()];
    let tokens = s.tokens(&b).await;
    secrets.extend(tokens.iter().map(String::as_str));
    assert_logs_clean(&secrets);
}

#[actix_web::test]
async fn declining_at_the_provider_shows_a_clear_page_and_signs_nobody_in() {
    let s = start(PROVIDERS).await;
    let b = s.browser();
    let start = start_provider(&b, "github", "/dash").await;
    let back = consent(&b, &start.location, "deny").await;
    assert_eq!(query(&back.location)["error"], "access_denied");
    let page = b.get(&back.location).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.has("cancelled or refused"), "{}", page.body);
    assert!(page.has("<h1>Sign in</h1>"), "back on the login page");
    assert_eq!(page.field("rd"), "/dash", "the return URL is kept");
    assert!(b.session().is_none());
    assert_eq!(s.calls("/auth/v1/provider/token").await, 0);
    // Unknown providers are refused before CloudBase is asked.
    let unknown = b.get("/__auth/start?provider=google&rd=%2F").await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.has("This sign-in option is not available."));
    assert_eq!(s.calls("/auth/v1/provider/uri").await, 1);
    // Not a navigation: no state is minted.
    let mut resp = awc::Client::new()
        .get(format!("{}/__auth/start?provider=github&rd=%2F", s.url))
        .insert_header(("accept", "application/json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "bad_request");
    assert_eq!(s.calls("/auth/v1/provider/uri").await, 1);
}

#[actix_web::test]
async fn a_signed_in_user_links_a_provider_from_the_account_page() {
    let s = start(PROVIDERS).await;
    let b = s.browser();
    let signed = b.password_sign_in("alice", "alice-pass-1", "/").await;
    assert_eq!(signed.status, 302);
    let cookie = b.session().unwrap();
    let account = b.get("/__auth/account").await;
    assert!(
        account.has("name=\"provider\" value=\"github\"") && account.has(">Link<"),
        "{}",
        account.body
    );
    assert!(
        !account.has("name=\"provider\" value=\"google\""),
        "only configured providers are offered"
    );
    let start = b
        .post("/__auth/start", &[("provider", "github"), ("bind", "1")])
        .await;
    assert_eq!(start.status, 302, "{}", start.body);
    let back = consent(&b, &start.location, "approve").await;
    let done = b.get(&back.location).await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/__auth/account?done=linked");
    assert_eq!(b.session().unwrap(), cookie, "the same session");
    assert_eq!(s.calls("/auth/v1/user/provider/bind").await, 1);
    assert_eq!(s.calls("/auth/v1/signin/with/provider").await, 0);
    let alice = s.user("alice").await;
    assert!(alice.to_string().contains("github-octocat"), "{alice}");
    let page = b.get("/__auth/account?done=linked").await;
    assert!(page.has("The sign-in method is linked."));
    // A binding state cannot be started without a session, nor by a cross-site form.
    let other = s.browser();
    other.get("/__auth/").await;
    let refused = other
        .post("/__auth/start", &[("provider", "github"), ("bind", "1")])
        .await;
    assert_eq!(refused.status, 302);
    assert!(
        refused.location.starts_with("/__auth/?rd="),
        "{}",
        refused.location
    );
    let forged = b
        .post_raw("/__auth/start", &[("provider", "github"), ("bind", "1")])
        .await;
    assert_eq!(forged.status, 403);
}

// ----- attacks on the state -----

#[actix_web::test]
async fn a_state_altered_at_any_byte_replayed_expired_or_foreign_is_refused() {
    let s = start(PROVIDERS).await;
    let b = s.browser();
    let (url, q) = callback_url(&s, &b, "/dash").await;
    let state = q["state"].clone();
    let code = q["code"].clone();
    let with_state = |st: &str| format!("/__auth/callback?code={}&state={}", enc(&code), enc(st));
    // Every byte position, altered.
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for i in 0..state.len() {
        let c = state.as_bytes()[i] as char;
        let swap = alphabet.chars().find(|a| *a != c).unwrap();
        let mut bad = state.clone();
        bad.replace_range(i..i + 1, &swap.to_string());
        let page = b.get(&with_state(&bad)).await;
        assert!(
            is_state_page(&page),
            "byte {i}: {} {}",
            page.status,
            page.body
        );
    }
    // Truncated, missing, oversized, not base64, base64 of nothing sealed.
    for bad in [
        &state[..state.len() - 1],
        "",
        &"A".repeat(20_000),
        "!!!not*base64!!!",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let page = b.get(&with_state(bad)).await;
        assert!(is_state_page(&page), "{}: {}", bad.len(), page.status);
    }
    let missing = b
        .get(&format!("/__auth/callback?code={}", enc(&code)))
        .await;
    assert!(is_state_page(&missing));
    // Another browser (another CSRF cookie) with the genuine URL.
    let thief = s.browser();
    thief.get("/__auth/").await;
    let stolen = thief.get(&url).await;
    assert!(is_state_page(&stolen));
    assert!(thief.session().is_none());
    assert_eq!(
        s.calls("/auth/v1/provider/token").await,
        0,
        "no state opened so far"
    );
    // The genuine one still works, with its own return URL whatever the query says.
    let done = b
        .get(&format!("{url}&rd=https%3A%2F%2Fevil.example%2F"))
        .await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/dash");
    // Replayed.
    let replay = b.get(&url).await;
    assert!(is_state_page(&replay));
    assert_eq!(s.calls("/auth/v1/provider/token").await, 1);
    // Expired: ten minutes on the gateway's clock.
    let b2 = s.browser();
    let (late, _) = callback_url(&s, &b2, "/").await;
    s.clock.advance(Duration::from_secs(601));
    let page = b2.get(&late).await;
    assert!(is_state_page(&page), "{} {}", page.status, page.body);
    assert!(page.has("href=\"/__auth/\""), "a link back to sign in");
    assert_eq!(s.calls("/auth/v1/provider/token").await, 1);
    assert_logs_clean(&[state.as_str(), code.as_str()]);
}

#[actix_web::test]
async fn a_state_is_refused_at_another_kinds_callback() {
    let s = start(&format!("{PROVIDERS}captcha_mode = \"redirect\"\n")).await;
    let b = s.browser();
    let (_, q) = callback_url(&s, &b, "/").await;
    let provider_state = q["state"].clone();
    // A captcha state, from the emulator's captcha page.
    s.env.settings(json!({"captcha_required": true})).await;
    let page = b.password_sign_in("alice", "alice-pass-1", "/").await;
    assert_eq!(page.status, 302);
    let solved = solve_redirect_captcha(&b, &page.location, "pass").await;
    let captcha_state = query(&solved.location)["state"].clone();
    let at_provider = b
        .get(&format!(
            "/__auth/callback?code=x&state={}",
            enc(&captcha_state)
        ))
        .await;
    assert!(is_state_page(&at_provider));
    let at_captcha = b
        .get(&format!(
            "/__auth/captcha/callback?captcha_token=x&expires_in=600&state={}",
            enc(&provider_state)
        ))
        .await;
    assert!(is_state_page(&at_captcha));
    // Both were only looked at: each still works at its own callback.
    let done = b.get(&solved.location).await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert!(b.session().is_some());
}

#[actix_web::test]
async fn the_open_redirect_corpus_as_rd_never_leaves_the_site() {
    // 174 starts from one address: over the per-client limit of starts, which is not tested here.
    let s = start(&format!("{PROVIDERS}rate_limit_start_per_ip = \"off\"\n")).await;
    let corpus = include_str!("data/open_redirect.txt");
    let payloads: Vec<&str> = corpus
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(payloads.len() >= 100);
    let b = s.browser();
    b.get("/__auth/").await;
    let own = url::Url::parse(&s.url).unwrap();
    for p in payloads {
        let start = b
            .get(&format!("/__auth/start?provider=github&rd={}", enc(p)))
            .await;
        assert_eq!(start.status, 302, "{p:?}");
        let back = consent(&b, &start.location, "approve").await;
        let done = b.get(&back.location).await;
        assert_eq!(done.status, 302, "{p:?}: {}", done.body);
        let landed = own.join(&done.location).unwrap();
        assert_eq!(
            (landed.scheme(), landed.host_str()),
            (own.scheme(), own.host_str()),
            "{p:?} -> {}",
            done.location
        );
        assert!(
            !done.location.starts_with("//"),
            "{p:?} -> {}",
            done.location
        );
    }
}

// ----- captcha -----

/// The person's decision on the emulator's captcha page; the redirect back.
async fn solve_redirect_captcha(b: &Browser, page_url: &str, decision: &str) -> Page {
    let page = b.get(page_url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let id = query(page_url)["id"].clone();
    let base = page_url.split('?').next().unwrap();
    let back = b
        .post_raw(base, &[("id", id.as_str()), ("decision", decision)])
        .await;
    assert_eq!(back.status, 302);
    assert!(back.location.contains("/__auth/captcha/callback?"));
    back
}

fn captcha_tokens_sent(reqs: &[Value]) -> Vec<String> {
    reqs.iter()
        .filter_map(|r| {
            let q = r["query"].as_str().unwrap_or_default();
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "captcha_token")
                .map(|(_, v)| v.into_owned())
        })
        .collect()
}

#[actix_web::test]
async fn redirect_captcha_during_password_sign_in_then_reused_for_a_code() {
    let s = start("").await;
    s.env.settings(json!({"captcha_required": true})).await;
    let b = s.browser();
    let page = b.password_sign_in("alice", "alice-pass-1", "/after").await;
    assert_eq!(page.status, 302, "{}", page.body);
    assert!(
        page.location
            .starts_with(&format!("{}/__emulator/captcha?id=", s.env.emu.url)),
        "{}",
        page.location
    );
    let init = s.env.requests_to("/auth/v1/captcha/init").await;
    assert_eq!(init.len(), 1);
    assert_eq!(init[0]["headers"]["authorization"], "Basic", "{}", init[0]);
    let back = solve_redirect_captcha(&b, &page.location, "pass").await;
    let token = query(&back.location)["captcha_token"].clone();
    let done = b.get(&back.location).await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/after");
    assert!(b.session().is_some());
    let signins = s.env.requests_to("/auth/v1/signin").await;
    assert_eq!(signins.len(), 2, "the refused call, then one retry");
    assert_eq!(captcha_tokens_sent(&signins), vec![token.clone()]);
    // A later step that is asked for a captcha tries the solved token first.
    let sent = send_code(&b, "email", "email", "bob@example.com", "/").await;
    assert_eq!(sent.status, 302, "{}", sent.body);
    assert!(
        sent.location.starts_with("/__auth/code?flow="),
        "{}",
        sent.location
    );
    assert_eq!(
        s.calls("/auth/v1/captcha/init").await,
        1,
        "no second captcha"
    );
    let sends = s.env.requests_to("/auth/v1/verification").await;
    assert_eq!(captcha_tokens_sent(&sends), vec![token.clone()]);
    let tokens = s.tokens(&b).await;
    let mut secrets = vec!["alice-pass-1", token.as_str()];
    secrets.extend(tokens.iter().map(String::as_str));
    assert_logs_clean(&secrets);
}

#[actix_web::test]
async fn redirect_captcha_during_code_sending_and_cancel_on_the_captcha_page() {
    let s = start("").await;
    s.env.settings(json!({"captcha_required": true})).await;
    let b = s.browser();
    let page = send_code(&b, "email", "email", "alice@example.com", "/x").await;
    assert_eq!(page.status, 302);
    let back = solve_redirect_captcha(&b, &page.location, "pass").await;
    let done = b.get(&back.location).await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert!(
        done.location.starts_with("/__auth/code?flow="),
        "{}",
        done.location
    );
    let code = s.env.code_for("alice@example.com").await;
    let entry = b.get(&done.location).await;
    assert!(entry.has("alice@example.com"));
    let flow = entry.field("flow");
    let signed = b
        .post("/__auth/code", &[("flow", &flow), ("code", &code)])
        .await;
    assert_eq!(signed.status, 302, "{}", signed.body);
    assert_eq!(signed.location, "/x");

    // Cancelled: the form again with what was typed, never the password.
    let c = s.browser();
    let page = c.password_sign_in("bob", "bob-secret-pw", "/y").await;
    assert_eq!(page.status, 302);
    let back = solve_redirect_captcha(&c, &page.location, "cancel").await;
    assert_eq!(query(&back.location)["error"], "access_denied");
    let again = c.get(&back.location).await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert!(again.has("security check was cancelled"), "{}", again.body);
    assert_eq!(again.field("username"), "bob");
    assert_eq!(again.field("rd"), "/y");
    assert!(!again.has("bob-secret-pw"));
    assert!(c.session().is_none());
    // The step is gone with the cancel: the same callback again is refused.
    let replay = c.get(&back.location).await;
    assert!(is_state_page(&replay));
    assert_logs_clean(&["bob-secret-pw", code.as_str()]);
}

#[actix_web::test]
async fn image_captcha_wrong_then_right_during_password_sign_in() {
    let s = start("captcha_mode = \"image\"\n").await;
    s.env.settings(json!({"captcha_required": true})).await;
    let b = s.browser();
    let page = b.password_sign_in("alice", "alice-pass-1", "/img").await;
    assert_eq!(page.status, 302, "{}", page.body);
    assert!(
        page.location.starts_with("/__auth/captcha?flow="),
        "{}",
        page.location
    );
    let data = s.env.requests_to("/auth/v1/captcha/data").await;
    assert_eq!(data.len(), 1);
    let shown = b.get(&page.location).await;
    assert_eq!(shown.status, 200);
    assert!(shown.has("<img src=\"data:image/"), "{}", shown.body);
    let flow = shown.field("flow");
    let wrong = b
        .post("/__auth/captcha", &[("flow", &flow), ("answer", "nope")])
        .await;
    assert_eq!(wrong.status, 400, "{}", wrong.body);
    assert!(wrong.has("do not match the picture"));
    assert_eq!(s.calls("/auth/v1/captcha/data").await, 2, "a new picture");
    let captchas = s.env.get_json("/__emulator/captchas").await;
    let answer = captchas.as_array().unwrap().last().unwrap()["answer"]
        .as_str()
        .unwrap()
        .to_string();
    let done = b
        .post("/__auth/captcha", &[("flow", &flow), ("answer", &answer)])
        .await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/img");
    assert!(b.session().is_some());
    let signins = s.env.requests_to("/auth/v1/signin").await;
    assert_eq!(signins.len(), 2);
    assert_eq!(captcha_tokens_sent(&signins).len(), 1);
    // The flow is spent.
    let replay = b
        .post("/__auth/captcha", &[("flow", &flow), ("answer", &answer)])
        .await;
    assert_eq!(replay.status, 400);
    assert!(replay.has("expired or was already used"));
    assert_logs_clean(&["alice-pass-1"]);
}

#[actix_web::test]
async fn image_captcha_during_code_sending_then_cancel() {
    let s = start("captcha_mode = \"image\"\n").await;
    s.env.settings(json!({"captcha_required": true})).await;
    let b = s.browser();
    let page = send_code(&b, "sms", "phone", "13800000001", "/z").await;
    assert_eq!(page.status, 302, "{}", page.body);
    let shown = b.get(&page.location).await;
    let flow = shown.field("flow");
    let cancelled = b
        .post("/__auth/captcha", &[("flow", &flow), ("cancel", "1")])
        .await;
    assert_eq!(cancelled.status, 400, "{}", cancelled.body);
    assert!(cancelled.has("security check was cancelled"));
    assert_eq!(
        cancelled.field("phone"),
        "13800000001",
        "the number is kept"
    );
    assert_eq!(s.calls("/auth/v1/verification").await, 1, "nothing sent");
    // Again, solved this time: the code page.
    let before = s.env.get_json("/__emulator/captchas").await;
    let page = send_code(&b, "sms", "phone", "13800000001", "/z").await;
    let shown = b.get(&page.location).await;
    let flow = shown.field("flow");
    let after = s.env.get_json("/__emulator/captchas").await;
    let new = after
        .as_array()
        .unwrap()
        .iter()
        .find(|c| !before.as_array().unwrap().contains(c))
        .expect("a new picture");
    let answer = new["answer"].as_str().unwrap().to_string();
    let done = b
        .post("/__auth/captcha", &[("flow", &flow), ("answer", &answer)])
        .await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert!(done.location.starts_with("/__auth/code?flow="));
    let outbox = s.env.get_json("/__emulator/outbox").await;
    assert_eq!(outbox.as_array().unwrap().len(), 1, "one code sent");
}

#[actix_web::test]
async fn a_token_at_once_retries_now_and_a_refused_retry_gets_one_fresh_captcha() {
    let s = start("").await;
    // captcha_required is off, so captcha/init answers a token at once.
    let (status, _) = s
        .env
        .post_json(
            "/__emulator/faults",
            json!({"path": "/auth/v1/signin", "error": "captcha_required", "status": 403, "error_code": 7}),
        )
        .await;
    assert_eq!(status, 200);
    let b = s.browser();
    let page = b.password_sign_in("alice", "alice-pass-1", "/now").await;
    assert_eq!(page.status, 302, "{}", page.body);
    assert_eq!(page.location, "/now", "signed in in one answer");
    assert_eq!(s.calls("/auth/v1/captcha/init").await, 1);
    let signins = s.env.requests_to("/auth/v1/signin").await;
    assert_eq!(signins.len(), 2);
    assert_eq!(captcha_tokens_sent(&signins).len(), 1);

    // captcha_invalid on every retry: one fresh captcha, then a message.
    let (status, _) = s
        .env
        .post_json(
            "/__emulator/faults",
            json!({"path": "/auth/v1/signin", "error": "captcha_invalid", "status": 403, "error_code": 7, "times": 3}),
        )
        .await;
    assert_eq!(status, 200);
    let c = s.browser();
    let page = c.password_sign_in("alice", "alice-pass-1", "/").await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(
        page.has("security check could not be completed"),
        "{}",
        page.body
    );
    assert_eq!(page.field("username"), "alice");
    assert_eq!(
        s.calls("/auth/v1/captcha/init").await,
        3,
        "two more captchas"
    );
    assert_eq!(s.calls("/auth/v1/signin").await, 5);
    assert!(c.session().is_none());
}

#[actix_web::test]
async fn api_callers_get_captcha_required_as_json_and_keep_their_attempt() {
    let s = start("").await;
    s.env.settings(json!({"captcha_required": true})).await;
    let b = s.browser();
    b.get("/__auth/?method=email").await;
    let token = b.csrf.borrow().clone();
    let mut resp = b
        .http
        .post(format!("{}/__auth/sign_in/email", s.url))
        .insert_header(("accept", "application/json"))
        .insert_header(("cookie", b.cookie_header()))
        .send_form(&[("csrf", token.as_str()), ("email", "alice@example.com")])
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "captcha_required");
    assert_eq!(s.calls("/auth/v1/captcha/init").await, 0);
    // The refused send did not count against the address's minute.
    s.env.settings(json!({"captcha_required": false})).await;
    let sent = send_code(&b, "email", "email", "alice@example.com", "/").await;
    assert_eq!(sent.status, 302, "{}", sent.body);
}
