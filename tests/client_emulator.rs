//! The CloudBase client against the emulator, over real HTTP: every endpoint the flows need,
//! and every error path, asserting on what the client returned and what the emulator saw.

mod common;

use std::time::Duration;

use cloudbase_gateway::cloudbase::types::*;
use cloudbase_gateway::cloudbase::{CloudBaseError, TransportKind};
use cloudbase_gateway::emulator::EmulatorOptions;
use cloudbase_gateway::secret::Secret;
use common::{code_request, code_token, ctx, pw, start, start_with};
use serde_json::json;

fn api_code(e: &CloudBaseError) -> (&str, Option<i64>) {
    let api = e
        .api()
        .unwrap_or_else(|| panic!("expected an API error, got {e:?}"));
    (api.error.as_str(), api.error_code)
}

#[actix_web::test]
async fn password_sign_in_returns_credentials_and_profile() {
    let env = start();
    let c = ctx();
    let creds = env
        .client
        .signin(&c, &pw("alice", "alice-pass-1"))
        .await
        .unwrap();
    assert_eq!(creds.token_type, "Bearer");
    assert_eq!(creds.expires_in, 7200);
    assert_eq!(creds.scope, "user");
    assert_eq!(creds.groups, vec!["staff".to_string()]);
    assert!(!creds.is_anonymous());
    assert_eq!(creds.access_token.expose().split('.').count(), 3, "a JWT");
    let me = env.client.user_me(&c, &creds.access_token).await.unwrap();
    assert_eq!(me.sub, creds.sub);
    assert_eq!(me.email, "alice@example.com");
    assert_eq!(me.phone_number, "+86 13800000001");
    assert_eq!(me.groups[0].id, "staff");
    assert!(me.has_password);

    // E-mail and phone (formatted as the SDK does) work as the login too.
    let by_email = env
        .client
        .signin(&c, &pw("alice@example.com", "alice-pass-1"))
        .await
        .unwrap();
    assert_eq!(by_email.sub, creds.sub);
    let phone = Contact::phone("13800000001");
    let by_phone = env
        .client
        .signin(&c, &pw(phone.value(), "alice-pass-1"))
        .await
        .unwrap();
    assert_eq!(by_phone.sub, creds.sub);
}

#[actix_web::test]
async fn requests_carry_the_sdk_headers_and_query() {
    let env = start();
    let c = ctx();
    let creds = env
        .client
        .signin(&c, &pw("alice", "alice-pass-1"))
        .await
        .unwrap();
    env.client.user_me(&c, &creds.access_token).await.unwrap();

    let signin = &env.requests_to("/auth/v1/signin").await[0];
    assert_eq!(signin["method"], "POST");
    assert_eq!(signin["query"], "client_id=test-env");
    assert_eq!(signin["headers"]["x-device-id"], c.device_id.as_str());
    assert_eq!(signin["headers"]["content-type"], "application/json");
    let rid = signin["headers"]["x-request-id"].as_str().unwrap();
    assert_eq!(rid.len(), 32);
    assert!(rid.chars().all(|ch| ch.is_ascii_hexdigit()));
    assert!(signin["headers"].get("authorization").is_none());

    let me = &env.requests_to("/auth/v1/user/me").await[0];
    assert_eq!(me["query"], "", "bearer calls carry no client_id");
    assert_eq!(
        me["headers"]["authorization"], "Bearer",
        "the hook shows the scheme only"
    );
    assert_ne!(
        me["headers"]["x-request-id"], signin["headers"]["x-request-id"],
        "a fresh request id per call"
    );
}

#[actix_web::test]
async fn password_errors_are_typed() {
    let env = start();
    let c = ctx();
    let e = env
        .client
        .signin(&c, &pw("alice", "wrong-password"))
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), ("invalid_password", Some(3)));
    assert_eq!(e.api().unwrap().status, 400);
    assert_eq!(e.api().unwrap().request_id.len(), 32);
    assert!(!e.is_unavailable());

    for (login, password, expected) in [
        ("nobody", "x-pass-123", "not_found"),
        ("nopass", "anything-1", "password_not_set"),
        ("blocked", "blocked-pass", "user_blocked"),
        ("pending", "pending-pass", "user_pending"),
    ] {
        let e = env
            .client
            .signin(&c, &pw(login, password))
            .await
            .unwrap_err();
        assert_eq!(api_code(&e).0, expected, "{login}");
    }
}

#[actix_web::test]
async fn repeated_wrong_passwords_lock_the_account_for_a_while() {
    let env = start();
    let c = ctx();
    for _ in 0..10 {
        let e = env
            .client
            .signin(&c, &pw("bob", "wrong-1"))
            .await
            .unwrap_err();
        assert!(e.is("invalid_password"));
    }
    let e = env
        .client
        .signin(&c, &pw("bob", "bob-pass-1"))
        .await
        .unwrap_err();
    assert!(e.is("invalid_status"), "{e:?}");
    env.advance(901).await;
    env.client
        .signin(&c, &pw("bob", "bob-pass-1"))
        .await
        .unwrap();
}

#[actix_web::test]
async fn anonymous_sign_in_is_keyed_by_device_and_can_be_switched_off() {
    let env = start();
    let c = ctx();
    let a = env.client.signin_anonymously(&c, false).await.unwrap();
    assert!(a.is_anonymous());
    let again = env.client.signin_anonymously(&c, true).await.unwrap();
    assert_eq!(again.sub, a.sub, "same device id, same anonymous user");
    let other = env.client.signin_anonymously(&ctx(), false).await.unwrap();
    assert_ne!(other.sub, a.sub);

    // The re-sign-in after a failed refresh uses Basic client_id: as the SDK does.
    let reqs = env.requests_to("/auth/v1/signin/anonymously").await;
    assert!(reqs[0]["headers"].get("authorization").is_none());
    assert_eq!(reqs[1]["headers"]["authorization"], "Basic");
    assert_eq!(reqs[1]["query"], "client_id=test-env");

    let e = env
        .client
        .signin_anonymously(&common::ctx_without_device(), false)
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), ("invalid_argument", Some(3)));
    assert_eq!(e.api().unwrap().status, 400);

    env.settings(json!({ "anonymous_enabled": false })).await;
    let e = env.client.signin_anonymously(&c, false).await.unwrap_err();
    assert_eq!(api_code(&e), ("unimplemented", Some(12)));
    assert_eq!(e.api().unwrap().status, 403);
}

#[actix_web::test]
async fn refresh_rotates_and_the_old_token_is_refused() {
    let env = start();
    let c = ctx();
    let first = env
        .client
        .signin(&c, &pw("alice", "alice-pass-1"))
        .await
        .unwrap();
    let rt1 = first.refresh_token.clone().unwrap();
    let second = env.client.refresh(&c, &rt1).await.unwrap();
    let rt2 = second.refresh_token.clone().unwrap();
    assert_ne!(rt1.expose(), rt2.expose());
    assert_ne!(first.access_token.expose(), second.access_token.expose());
    assert_eq!(second.sub, first.sub);
    env.client.user_me(&c, &second.access_token).await.unwrap();

    let e = env.client.refresh(&c, &rt1).await.unwrap_err();
    assert!(e.is("invalid_grant"), "{e:?}");
    env.client.refresh(&c, &rt2).await.unwrap();

    let token_call = &env.requests_to("/auth/v1/token").await[0];
    assert_eq!(token_call["query"], "client_id=test-env");
}

#[actix_web::test]
async fn access_tokens_expire_and_refresh_tokens_too() {
    let mut opts = EmulatorOptions::new("test-env");
    opts.users = common::default_users();
    opts.access_token_ttl = 60;
    opts.refresh_token_ttl = 120;
    let env = start_with(opts, Duration::from_secs(2));
    let c = ctx();
    let creds = env
        .client
        .signin(&c, &pw("alice", "alice-pass-1"))
        .await
        .unwrap();
    assert_eq!(creds.expires_in, 60);
    env.advance(61).await;
    let e = env
        .client
        .user_me(&c, &creds.access_token)
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), ("unauthenticated", Some(16)));
    assert_eq!(e.api().unwrap().status, 401);
    env.advance(60).await;
    let e = env
        .client
        .refresh(&c, creds.refresh_token.as_ref().unwrap())
        .await
        .unwrap_err();
    assert!(e.is("invalid_grant"));
}

#[actix_web::test]
async fn revoke_and_signout_end_the_session() {
    let env = start();
    let c = ctx();
    let creds = env
        .client
        .signin(&c, &pw("alice", "alice-pass-1"))
        .await
        .unwrap();
    env.client.revoke(&c, &creds.access_token).await.unwrap();
    let revoke = &env.requests_to("/auth/v1/revoke").await[0];
    assert!(
        revoke["headers"].get("authorization").is_none(),
        "the token travels in the body"
    );
    assert!(env
        .client
        .user_me(&c, &creds.access_token)
        .await
        .unwrap_err()
        .is("unauthenticated"));
    assert!(env
        .client
        .refresh(&c, creds.refresh_token.as_ref().unwrap())
        .await
        .unwrap_err()
        .is("invalid_grant"));

    let creds = env
        .client
        .signin(&c, &pw("alice", "alice-pass-1"))
        .await
        .unwrap();
    let out = env
        .client
        .user_signout(
            &c,
            &creds.access_token,
            Some("https://app.example.com/bye"),
            Some("s1"),
        )
        .await
        .unwrap();
    assert_eq!(
        out.redirect_uri.as_deref(),
        Some("https://app.example.com/bye")
    );
    assert!(env
        .client
        .user_me(&c, &creds.access_token)
        .await
        .unwrap_err()
        .is("unauthenticated"));
}

#[actix_web::test]
async fn email_code_sign_up_then_code_sign_in() {
    let env = start();
    let c = ctx();
    let email = Contact::Email("new@example.com".into());
    let (sent, token) = code_token(&env, &c, email.clone(), VerificationTarget::NotUser).await;
    assert!(!sent.is_user);
    let creds = env
        .client
        .signup(
            &c,
            &SignUpRequest {
                email: Some("new@example.com".into()),
                verification_token: Some(token.clone()),
                username: Some("newbie".into()),
                password: Some(Secret::new("newbie-pass-1")),
                name: Some("Newbie".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let me = env.client.user_me(&c, &creds.access_token).await.unwrap();
    assert_eq!(
        (me.email.as_str(), me.username.as_str(), me.name.as_str()),
        ("new@example.com", "newbie", "Newbie")
    );

    // The verification token is single use.
    let e = env
        .client
        .signup(
            &c,
            &SignUpRequest {
                email: Some("new@example.com".into()),
                verification_token: Some(token),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(e.is("invalid_argument"), "{e:?}");

    // Now a registered contact: is_user is true and the token signs in.
    let (sent, token) = code_token(&env, &c, email, VerificationTarget::Any).await;
    assert!(sent.is_user);
    let again = env
        .client
        .signin(
            &c,
            &SignInRequest {
                username: "new@example.com".into(),
                password: None,
                verification_token: Some(token),
            },
        )
        .await
        .unwrap();
    assert_eq!(again.sub, creds.sub);

    // Registering the same contact twice is refused.
    let (_, token) = code_token(
        &env,
        &c,
        Contact::Email("new@example.com".into()),
        VerificationTarget::Any,
    )
    .await;
    let e = env
        .client
        .signup(
            &c,
            &SignUpRequest {
                email: Some("new@example.com".into()),
                verification_token: Some(token),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), ("failed_precondition", Some(9)));
}

#[actix_web::test]
async fn sms_code_sign_in() {
    let env = start();
    let c = ctx();
    let phone = Contact::phone("+8613800000002");
    let (sent, token) = code_token(&env, &c, phone.clone(), VerificationTarget::User).await;
    assert!(sent.is_user);
    let creds = env
        .client
        .signin(
            &c,
            &SignInRequest {
                username: phone.value().into(),
                password: None,
                verification_token: Some(token),
            },
        )
        .await
        .unwrap();
    let me = env.client.user_me(&c, &creds.access_token).await.unwrap();
    assert_eq!(me.username, "bob");
}

#[actix_web::test]
async fn code_errors_expired_used_and_too_many_attempts() {
    let env = start();
    let c = ctx();
    let send = |to: &str| code_request(Contact::Email(to.into()), VerificationTarget::Any);

    // Expired: the clock moves past 600 s.
    let sent = env
        .client
        .send_verification(&c, None, &send("x1@example.com"))
        .await
        .unwrap();
    let code = env.code_for("x1@example.com").await;
    env.advance(601).await;
    let e = env
        .client
        .verify(&c, &sent.verification_id, &Secret::new(code))
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), ("invalid_argument", Some(3)));
    assert!(e.api().unwrap().error_description.contains("expired"));

    // Used: a second verify of the right code.
    let sent = env
        .client
        .send_verification(&c, None, &send("x2@example.com"))
        .await
        .unwrap();
    let code = env.code_for("x2@example.com").await;
    env.client
        .verify(&c, &sent.verification_id, &Secret::new(code.clone()))
        .await
        .unwrap();
    let e = env
        .client
        .verify(&c, &sent.verification_id, &Secret::new(code))
        .await
        .unwrap_err();
    assert!(e.is("invalid_argument"));
    assert!(e.api().unwrap().error_description.contains("used"));

    // Too many attempts: the fifth wrong guess aborts, and then even the right code is refused.
    let sent = env
        .client
        .send_verification(&c, None, &send("x3@example.com"))
        .await
        .unwrap();
    let code = env.code_for("x3@example.com").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for i in 1..=5 {
        let e = env
            .client
            .verify(&c, &sent.verification_id, &Secret::new(wrong))
            .await
            .unwrap_err();
        let expected = if i < 5 { "invalid_argument" } else { "aborted" };
        assert!(e.is(expected), "attempt {i}: {e:?}");
    }
    let e = env
        .client
        .verify(&c, &sent.verification_id, &Secret::new(code))
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), ("aborted", Some(10)));

    // Targets: USER needs an existing user, NOT_USER a new contact.
    let e = env
        .client
        .send_verification(
            &c,
            None,
            &code_request(
                Contact::Email("ghost@example.com".into()),
                VerificationTarget::User,
            ),
        )
        .await
        .unwrap_err();
    assert!(e.is("not_found"));
    let e = env
        .client
        .send_verification(
            &c,
            None,
            &code_request(
                Contact::Email("alice@example.com".into()),
                VerificationTarget::NotUser,
            ),
        )
        .await
        .unwrap_err();
    assert!(e.is("failed_precondition"));
    let e = env
        .client
        .verify(&c, "no-such-id", &Secret::new("123456"))
        .await
        .unwrap_err();
    assert!(e.is("not_found"));
}

#[actix_web::test]
async fn anonymous_upgrade_keeps_the_uid() {
    let env = start();
    let c = ctx();
    let anon = env.client.signin_anonymously(&c, false).await.unwrap();
    let (_, token) = code_token(
        &env,
        &c,
        Contact::Email("upgraded@example.com".into()),
        VerificationTarget::NotUser,
    )
    .await;
    let creds = env
        .client
        .signup(
            &c,
            &SignUpRequest {
                email: Some("upgraded@example.com".into()),
                verification_token: Some(token),
                password: Some(Secret::new("upgraded-pass-1")),
                anonymous_token: Some(anon.access_token.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(creds.sub, anon.sub);
    assert!(!creds.is_anonymous());
    let me = env.client.user_me(&c, &creds.access_token).await.unwrap();
    assert_eq!(me.email, "upgraded@example.com");
    let signed_in = env
        .client
        .signin(&ctx(), &pw("upgraded@example.com", "upgraded-pass-1"))
        .await
        .unwrap();
    assert_eq!(signed_in.sub, anon.sub);
    // The anonymous session is over.
    assert!(env
        .client
        .user_me(&c, &anon.access_token)
        .await
        .unwrap_err()
        .is("unauthenticated"));
}

#[actix_web::test]
async fn forgot_password_reset() {
    let env = start();
    let c = ctx();
    let email = Contact::Email("alice@example.com".into());
    let (_, token) = code_token(&env, &c, email.clone(), VerificationTarget::User).await;
    env.client
        .reset_password(
            &c,
            &ResetPasswordRequest {
                contact: email.clone(),
                new_password: Secret::new("alice-new-pass"),
                verification_token: token.clone(),
            },
        )
        .await
        .unwrap();
    assert!(env
        .client
        .signin(&c, &pw("alice", "alice-pass-1"))
        .await
        .unwrap_err()
        .is("invalid_password"));
    env.client
        .signin(&c, &pw("alice", "alice-new-pass"))
        .await
        .unwrap();
    let e = env
        .client
        .reset_password(
            &c,
            &ResetPasswordRequest {
                contact: email,
                new_password: Secret::new("another-pass"),
                verification_token: token,
            },
        )
        .await
        .unwrap_err();
    assert!(
        e.is("invalid_argument"),
        "a verification token is spent once"
    );
}

#[actix_web::test]
async fn sudo_password_and_contact_changes() {
    let env = start();
    let c = ctx();
    let creds = env
        .client
        .signin(&c, &pw("alice", "alice-pass-1"))
        .await
        .unwrap();
    let at = &creds.access_token;
    let e = env
        .client
        .sudo(&c, at, &SudoProof::Password(Secret::new("nope-nope")))
        .await
        .unwrap_err();
    assert!(e.is("invalid_password"));
    let sudo = env
        .client
        .sudo(&c, at, &SudoProof::Password(Secret::new("alice-pass-1")))
        .await
        .unwrap();
    assert_eq!(sudo.expires_in, 900);

    env.client
        .set_password(&c, at, &Secret::new("alice-pass-2"), &sudo.sudo_token)
        .await
        .unwrap();
    env.client
        .signin(&c, &pw("alice", "alice-pass-2"))
        .await
        .unwrap();
    let e = env
        .client
        .set_password(&c, at, &Secret::new("alice-pass-3"), &Secret::new("forged"))
        .await
        .unwrap_err();
    assert!(e.is("permission_denied"));

    // Bind a new e-mail.
    let new_email = Contact::Email("alice2@example.com".into());
    let (_, vt) = code_token(&env, &c, new_email.clone(), VerificationTarget::Any).await;
    env.client
        .update_contact(
            &c,
            at,
            &ContactUpdateRequest {
                contact: new_email,
                sudo_token: sudo.sudo_token.clone(),
                verification_token: vt,
                conflict_resolution: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        env.client.user_me(&c, at).await.unwrap().email,
        "alice2@example.com"
    );

    // Bob's phone is taken: DEFAULT refuses, TRANSFER moves it.
    let bobs = Contact::phone("13800000002");
    let (_, vt) = code_token(&env, &c, bobs.clone(), VerificationTarget::Any).await;
    let e = env
        .client
        .update_contact(
            &c,
            at,
            &ContactUpdateRequest {
                contact: bobs.clone(),
                sudo_token: sudo.sudo_token.clone(),
                verification_token: vt.clone(),
                conflict_resolution: Some(ConflictResolution::Default),
            },
        )
        .await
        .unwrap_err();
    assert!(e.is("failed_precondition"));
    env.client
        .update_contact(
            &c,
            at,
            &ContactUpdateRequest {
                contact: bobs,
                sudo_token: sudo.sudo_token.clone(),
                verification_token: vt,
                conflict_resolution: Some(ConflictResolution::Transfer),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        env.client.user_me(&c, at).await.unwrap().phone_number,
        "+86 13800000002"
    );

    // Sudo by code, and the no-password case.
    let (_, vt) = code_token(
        &env,
        &c,
        Contact::Email("alice2@example.com".into()),
        VerificationTarget::Any,
    )
    .await;
    env.client
        .sudo(&c, at, &SudoProof::VerificationToken(vt))
        .await
        .unwrap();
    let (_, vt) = code_token(
        &env,
        &c,
        Contact::Email("nopass@example.com".into()),
        VerificationTarget::User,
    )
    .await;
    let np = env
        .client
        .signin(
            &c,
            &SignInRequest {
                username: "nopass@example.com".into(),
                password: None,
                verification_token: Some(vt),
            },
        )
        .await
        .unwrap();
    let s = env
        .client
        .sudo(
            &c,
            &np.access_token,
            &SudoProof::Password(Secret::new("whatever")),
        )
        .await
        .unwrap();
    assert_eq!(
        s.sudo_token.expose(),
        "",
        "spec §5.11: no password, empty sudo token"
    );
}

/// Drives the emulator's consent page like a browser and returns the callback URL.
async fn consent(env: &common::Env, uri: &str, login: &str, decision: &str) -> url::Url {
    let page_url = url::Url::parse(uri).unwrap();
    let mut page = env.http.get(uri).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = String::from_utf8(page.body().await.unwrap().to_vec()).unwrap();
    assert!(
        html.contains(r#"name="decision" value="approve""#) && html.contains(r#"value="deny""#),
        "{html}"
    );
    let q: std::collections::HashMap<String, String> =
        page_url.query_pairs().into_owned().collect();
    let form = [
        ("provider_id", q["provider_id"].as_str()),
        ("redirect_uri", q["redirect_uri"].as_str()),
        ("state", q["state"].as_str()),
        ("login", login),
        ("decision", decision),
    ];
    let resp = env
        .http
        .post(env.url("/__emulator/oauth/authorize"))
        .send_form(&form)
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    url::Url::parse(resp.headers().get("location").unwrap().to_str().unwrap()).unwrap()
}

fn query(url: &url::Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[actix_web::test]
async fn provider_redirect_sign_in_bind_and_unbind() {
    let env = start();
    let c = ctx();
    let callback = "https://gw.example.com/__auth/callback";
    let req = ProviderUriRequest {
        provider_id: "github".into(),
        redirect_uri: callback.into(),
        state: "st-123".into(),
        scope: None,
    };
    let uri = env.client.provider_uri(&c, &req).await.unwrap().uri;
    assert!(
        uri.starts_with(&format!("{}/__emulator/oauth/authorize?", env.emu.url)),
        "{uri}"
    );

    let back = consent(&env, &uri, "octocat", "approve").await;
    assert!(back.as_str().starts_with(callback));
    assert_eq!(query(&back, "state").as_deref(), Some("st-123"));
    let code = query(&back, "code").unwrap();

    // The redirect URI must match the one given to provider/uri.
    let e = env
        .client
        .provider_token(
            &c,
            &ProviderTokenRequest {
                provider_id: "github".into(),
                provider_redirect_uri: "https://evil.example.com/cb".into(),
                provider_code: Secret::new(code.clone()),
            },
        )
        .await
        .unwrap_err();
    assert!(e.is("invalid_argument"));

    let back = consent(&env, &uri, "octocat", "approve").await;
    let code = query(&back, "code").unwrap();
    let pt = env
        .client
        .provider_token(
            &c,
            &ProviderTokenRequest {
                provider_id: "github".into(),
                provider_redirect_uri: callback.into(),
                provider_code: Secret::new(code.clone()),
            },
        )
        .await
        .unwrap();
    assert_eq!(pt.expires_in, 3600);
    assert_eq!(pt.provider_profile.as_ref().unwrap().name, "octocat");
    // A code works once.
    let e = env
        .client
        .provider_token(
            &c,
            &ProviderTokenRequest {
                provider_id: "github".into(),
                provider_redirect_uri: callback.into(),
                provider_code: Secret::new(code),
            },
        )
        .await
        .unwrap_err();
    assert!(e.is("invalid_argument"));

    let creds = env
        .client
        .signin_with_provider(
            &c,
            &SignInWithProviderRequest {
                provider_token: pt.provider_token,
                force_disable_sign_up: false,
                sync_profile: false,
            },
        )
        .await
        .unwrap();
    let me = env.client.user_me(&c, &creds.access_token).await.unwrap();
    assert_eq!(me.name, "octocat");
    assert_eq!(me.providers[0].id, "github");

    // Alice binds a wx_open identity, sees it listed, and unbinds it.
    let alice = env
        .client
        .signin(&c, &pw("alice", "alice-pass-1"))
        .await
        .unwrap();
    let wx = env
        .client
        .provider_uri(
            &c,
            &ProviderUriRequest {
                provider_id: "wx_open".into(),
                redirect_uri: callback.into(),
                state: "s2".into(),
                scope: None,
            },
        )
        .await
        .unwrap();
    let back = consent(&env, &wx.uri, "alice-wx", "approve").await;
    let pt = env
        .client
        .provider_token(
            &c,
            &ProviderTokenRequest {
                provider_id: "wx_open".into(),
                provider_redirect_uri: callback.into(),
                provider_code: Secret::new(query(&back, "code").unwrap()),
            },
        )
        .await
        .unwrap();
    env.client
        .bind_provider(&c, &alice.access_token, &pt.provider_token)
        .await
        .unwrap();
    let list = env
        .client
        .list_providers(&c, &alice.access_token)
        .await
        .unwrap();
    let wx_entry = list.data.iter().find(|p| p.id == "wx_open").unwrap();
    assert!(wx_entry.bind);
    assert_eq!(wx_entry.provider_user_name, "alice-wx");
    assert!(!list.data.iter().find(|p| p.id == "github").unwrap().bind);
    env.client
        .unbind_provider(&c, &alice.access_token, "wx_open")
        .await
        .unwrap();
    let list = env
        .client
        .list_providers(&c, &alice.access_token)
        .await
        .unwrap();
    assert!(!list.data.iter().find(|p| p.id == "wx_open").unwrap().bind);
    let e = env
        .client
        .unbind_provider(&c, &alice.access_token, "wx_open")
        .await
        .unwrap_err();
    assert!(e.is("not_found"));

    // The octocat identity belongs to another user: binding it to Alice is refused.
    let back = consent(&env, &uri, "octocat", "approve").await;
    let pt = env
        .client
        .provider_token(
            &c,
            &ProviderTokenRequest {
                provider_id: "github".into(),
                provider_redirect_uri: callback.into(),
                provider_code: Secret::new(query(&back, "code").unwrap()),
            },
        )
        .await
        .unwrap();
    let e = env
        .client
        .bind_provider(&c, &alice.access_token, &pt.provider_token)
        .await
        .unwrap_err();
    assert!(e.is("failed_precondition"));

    // Declining on the consent page comes back as access_denied with the state.
    let back = consent(&env, &uri, "octocat", "deny").await;
    assert_eq!(query(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(query(&back, "state").as_deref(), Some("st-123"));
    assert!(query(&back, "code").is_none());

    let e = env
        .client
        .provider_uri(
            &c,
            &ProviderUriRequest {
                provider_id: "nope".into(),
                redirect_uri: callback.into(),
                state: "s".into(),
                scope: None,
            },
        )
        .await
        .unwrap_err();
    assert!(e.is("not_found"));
}

#[actix_web::test]
async fn custom_tickets_are_verified() {
    use cloudbase_gateway::ticket::{create_ticket, KeyFile};
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

    let keypair = |seed: u64| {
        use rand::SeedableRng;
        let key =
            rsa::RsaPrivateKey::new(&mut rand::rngs::StdRng::seed_from_u64(seed), 2048).unwrap();
        (
            key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
            rsa::RsaPublicKey::from(&key)
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        )
    };
    let (private, public) = keypair(1);
    let (other_private, _) = keypair(2);
    let mut opts = EmulatorOptions::new("test-env");
    opts.ticket_keys = vec![("key-1".into(), public)];
    let env = start_with(opts, Duration::from_secs(2));
    let c = ctx();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let key = |pem: &str, env_id: &str, id: &str| KeyFile {
        private_key_id: id.into(),
        private_key: Secret::new(pem),
        env_id: Some(env_id.into()),
    };

    let ticket = create_ticket(
        &key(&private, "test-env", "key-1"),
        "dev-user-1",
        now_ms,
        None,
        None,
    )
    .unwrap();
    let creds = env
        .client
        .signin_custom(&c, &Secret::new(ticket.clone()))
        .await
        .unwrap();
    let replay = env
        .client
        .signin_custom(&c, &Secret::new(ticket.clone()))
        .await
        .unwrap_err();
    assert!(
        replay.is("invalid_argument"),
        "a ticket signs in once: {replay:?}"
    );
    let again = env
        .client
        .signin_custom(
            &c,
            &Secret::new(
                create_ticket(
                    &key(&private, "test-env", "key-1"),
                    "dev-user-1",
                    now_ms + 1,
                    None,
                    None,
                )
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        creds.sub, again.sub,
        "the same custom uid maps to the same user"
    );
    assert_eq!(
        env.client
            .user_me(&c, &creds.access_token)
            .await
            .unwrap()
            .name,
        "dev-user-1"
    );

    let refused = [
        (
            "forged",
            create_ticket(
                &key(&other_private, "test-env", "key-1"),
                "dev-user-1",
                now_ms,
                None,
                None,
            )
            .unwrap(),
            "signature",
        ),
        (
            "other env",
            create_ticket(
                &key(&private, "prod-env", "key-1"),
                "dev-user-1",
                now_ms,
                None,
                None,
            )
            .unwrap(),
            "environment",
        ),
        (
            "unknown key id",
            create_ticket(
                &key(&private, "test-env", "key-9"),
                "dev-user-1",
                now_ms,
                None,
                None,
            )
            .unwrap(),
            "private_key_id",
        ),
        ("garbage", "not-a-ticket".to_string(), "ticket"),
    ];
    for (what, t, needle) in refused {
        let e = env
            .client
            .signin_custom(&c, &Secret::new(t))
            .await
            .unwrap_err();
        assert!(e.is("invalid_argument"), "{what}: {e:?}");
        assert!(
            e.api().unwrap().error_description.contains(needle),
            "{what}: {e:?}"
        );
    }
    env.advance(601).await;
    let e = env
        .client
        .signin_custom(&c, &Secret::new(ticket))
        .await
        .unwrap_err();
    assert!(
        e.api().unwrap().error_description.contains("expired"),
        "{e:?}"
    );
}

#[actix_web::test]
async fn image_captcha_required_then_satisfied() {
    let env = start();
    env.settings(json!({ "captcha_required": true })).await;
    let c = ctx();
    let e = env
        .client
        .signin(&c, &pw("alice", "alice-pass-1"))
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), ("captcha_required", Some(4001)));
    assert!(e.needs_captcha());
    let first_rid = e.api().unwrap().request_id.clone();

    let img = env
        .client
        .captcha_data(&c, "POST:/v1/signin")
        .await
        .unwrap();
    assert!(img.data.starts_with("data:image/svg+xml;base64,"));
    assert_eq!(img.expires_in, 300);
    let answer = env.captcha_answer(&img.token).await;

    // A wrong answer spends the image.
    let e = env
        .client
        .captcha_verify(&c, &img.token, "xxxx")
        .await
        .unwrap_err();
    assert!(e.is("invalid_argument"));
    let e = env
        .client
        .captcha_verify(&c, &img.token, &answer)
        .await
        .unwrap_err();
    assert!(e.is("invalid_argument"));

    let img = env
        .client
        .captcha_data(&c, "POST:/v1/signin")
        .await
        .unwrap();
    let answer = env.captcha_answer(&img.token).await;
    let solved = env
        .client
        .captcha_verify(&c, &img.token, &answer)
        .await
        .unwrap();
    assert_eq!(solved.expires_in, 600);

    // Retry with the token and the original request id, as the SDK does.
    let retry = c.with_captcha(solved.captcha_token.clone(), Some(first_rid.clone()));
    env.client
        .signin(&retry, &pw("alice", "alice-pass-1"))
        .await
        .unwrap();
    let signins = env.requests_to("/auth/v1/signin").await;
    let last = signins.last().unwrap();
    assert!(
        last["query"]
            .as_str()
            .unwrap()
            .starts_with("captcha_token=v1."),
        "{last}"
    );
    assert_eq!(last["headers"]["x-request-id"], first_rid.as_str());

    // Unknown tokens are captcha_invalid; code sending is protected too.
    let bad = c.with_captcha(Secret::new("v1.forged"), None);
    let e = env
        .client
        .signin(&bad, &pw("alice", "alice-pass-1"))
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), ("captcha_invalid", Some(4002)));
    let send = code_request(
        Contact::Email("cap@example.com".into()),
        VerificationTarget::Any,
    );
    assert!(env
        .client
        .send_verification(&c, None, &send)
        .await
        .unwrap_err()
        .is("captcha_required"));
    env.client
        .send_verification(&retry, None, &send)
        .await
        .unwrap();
}

#[actix_web::test]
async fn redirect_captcha_page_pass_and_cancel() {
    let env = start();
    let c = ctx();
    let callback = "https://gw.example.com/__auth/captcha/callback";
    // With the switch off, captcha/init answers a token at once.
    let direct = env.client.captcha_init(&c, callback, "s0").await.unwrap();
    assert!(direct.captcha_token.is_some() && direct.url.is_none());
    let init_req = &env.requests_to("/auth/v1/captcha/init").await[0];
    assert_eq!(init_req["headers"]["authorization"], "Basic");

    env.settings(json!({ "captcha_required": true })).await;
    for (decision, state) in [("pass", "s1"), ("cancel", "s2")] {
        let init = env.client.captcha_init(&c, callback, state).await.unwrap();
        let url = init.url.expect("a captcha page");
        assert_eq!(init.expires_in, 600);
        let mut page = env.http.get(&url).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let html = String::from_utf8(page.body().await.unwrap().to_vec()).unwrap();
        assert!(html.contains(r#"value="pass""#) && html.contains(r#"value="cancel""#));
        let id = query(&url::Url::parse(&url).unwrap(), "id").unwrap();
        let resp = env
            .http
            .post(env.url("/__emulator/captcha"))
            .send_form(&[("id", id.as_str()), ("decision", decision)])
            .await
            .unwrap();
        assert_eq!(resp.status(), 302);
        let back =
            url::Url::parse(resp.headers().get("location").unwrap().to_str().unwrap()).unwrap();
        assert!(back.as_str().starts_with(callback));
        assert_eq!(query(&back, "state").as_deref(), Some(state));
        if decision == "pass" {
            assert_eq!(query(&back, "expires_in").as_deref(), Some("600"));
            let token = Secret::new(query(&back, "captcha_token").unwrap());
            env.client
                .signin(&c.with_captcha(token, None), &pw("alice", "alice-pass-1"))
                .await
                .unwrap();
        } else {
            assert_eq!(query(&back, "error").as_deref(), Some("access_denied"));
            assert!(query(&back, "error_description").is_some());
            assert!(query(&back, "captcha_token").is_none());
        }
        // The page is single use.
        let again = env.http.get(&url).send().await.unwrap();
        assert_eq!(again.status(), 400);
    }
}

#[actix_web::test]
async fn faults_become_typed_errors() {
    let env = start_with(
        {
            let mut o = EmulatorOptions::new("test-env");
            o.users = common::default_users();
            o
        },
        Duration::from_millis(300),
    );
    let c = ctx();
    let (status, _) = env.post_json("/__emulator/faults", json!({ "path": "/auth/v1/signin", "error": "unavailable", "error_code": 14, "status": 503, "times": 2 })).await;
    assert_eq!(status, 200);
    for _ in 0..2 {
        let e = env
            .client
            .signin(&c, &pw("alice", "alice-pass-1"))
            .await
            .unwrap_err();
        assert_eq!(api_code(&e), ("unavailable", Some(14)));
        assert_eq!(e.api().unwrap().status, 503);
        assert!(e.is_unavailable());
    }
    env.client
        .signin(&c, &pw("alice", "alice-pass-1"))
        .await
        .expect("faults run out after `times`");

    // A delay past the client's timeout.
    env.post_json(
        "/__emulator/faults",
        json!({ "path": "/auth/v1/token", "delay_ms": 1500 }),
    )
    .await;
    let e = env
        .client
        .refresh(&c, &Secret::new("m.whatever"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            CloudBaseError::Timeout {
                endpoint: "/auth/v1/token",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_unavailable());

    // An undecodable body.
    env.post_json(
        "/__emulator/faults",
        json!({ "raw_body": "<html>502 Bad Gateway</html>", "status": 502 }),
    )
    .await;
    let e = env.client.user_me(&c, &Secret::new("t")).await.unwrap_err();
    assert!(
        matches!(e, CloudBaseError::Decode { status: 502, .. }),
        "{e:?}"
    );

    // A connection dropped mid-response.
    env.post_json(
        "/__emulator/faults",
        json!({ "path": "/auth/v1/user/me", "drop": true }),
    )
    .await;
    let e = env.client.user_me(&c, &Secret::new("t")).await.unwrap_err();
    assert!(
        matches!(
            e,
            CloudBaseError::Transport {
                kind: TransportKind::Io,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_unavailable());

    // DELETE clears pending faults.
    env.post_json("/__emulator/faults", json!({ "times": 5 }))
        .await;
    assert_eq!(env.delete("/__emulator/faults").await, 200);
    env.client
        .signin(&c, &pw("alice", "alice-pass-1"))
        .await
        .unwrap();

    // Nothing listening.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        port
    };
    let client = cloudbase_gateway::cloudbase::CloudBaseClient::new(
        cloudbase_gateway::cloudbase::ClientSettings {
            origin: url::Url::parse(&format!("http://127.0.0.1:{dead}")).unwrap(),
            client_id: "test-env".into(),
            client_secret: None,
            timeout: Duration::from_secs(2),
        },
        std::sync::Arc::new(cloudbase_gateway::entropy::OsEntropy),
    );
    let e = client
        .signin(&c, &pw("alice", "alice-pass-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            CloudBaseError::Transport {
                kind: TransportKind::Connect,
                ..
            }
        ),
        "{e:?}"
    );
}

#[actix_web::test]
async fn username_check_and_sign_up_switch() {
    let env = start();
    let c = ctx();
    assert!(env.client.check_if_user_exist(&c, "alice").await.unwrap());
    assert!(!env
        .client
        .check_if_user_exist(&c, "nobody-here")
        .await
        .unwrap());
    env.settings(json!({ "signup_enabled": false })).await;
    let (_, vt) = code_token(
        &env,
        &c,
        Contact::Email("late@example.com".into()),
        VerificationTarget::Any,
    )
    .await;
    let e = env
        .client
        .signup(
            &c,
            &SignUpRequest {
                email: Some("late@example.com".into()),
                verification_token: Some(vt),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(e.is("failed_precondition"));
}

#[actix_web::test]
async fn emulator_accepts_sdk_style_bodies_and_always_answers_json() {
    let env = start();
    // text/plain JSON body, as fetch sends it.
    let mut resp = env
        .http
        .post(env.url("/auth/v1/signin?client_id=test-env"))
        .insert_header(("content-type", "text/plain;charset=UTF-8"))
        .insert_header(("undefined", "undefined"))
        .send_body(r#"{"username":"alice","password":"alice-pass-1"}"#)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        body.get("code").is_none(),
        "no truthy code field in success bodies"
    );

    for (method, path, body) in [
        ("POST", "/auth/v1/signin", "{not json"),
        ("POST", "/auth/v1/nope", "{}"),
        ("GET", "/auth/v1/user/me", ""),
    ] {
        let mut resp = env
            .http
            .request(method.parse().unwrap(), env.url(path))
            .send_body(body.to_string())
            .await
            .unwrap();
        let json: serde_json::Value = resp.json().await.expect("always JSON");
        assert!(
            json["error"].is_string() && json["error_code"].is_i64(),
            "{path}: {json}"
        );
    }
    // An oversized body still gets a JSON answer.
    let mut resp = env
        .http
        .post(env.url("/auth/v1/signin"))
        .send_body(vec![b' '; 300 * 1024])
        .await
        .unwrap();
    let json: serde_json::Value = resp.json().await.expect("JSON for an oversized body");
    assert_eq!(json["error"], "invalid_argument");

    assert_eq!(env.delete("/__emulator/requests").await, 200);
    assert_eq!(
        env.get_json("/__emulator/requests")
            .await
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let (status, _) = env
        .post_json("/__emulator/settings", json!({ "captcha": true }))
        .await;
    assert_eq!(status, 400, "unknown settings are refused");
    let users = env.get_json("/__emulator/users").await;
    assert!(users
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u.get("password").is_none()));
}
