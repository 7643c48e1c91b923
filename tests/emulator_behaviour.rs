//! Emulator behaviour beyond the happy paths, over real HTTP through the client: lifetimes,
//! the less common flows, token contents, CORS, and regressions found in review.

mod common;

use std::time::Duration;

use base64::Engine;
use cloudbase_gateway::cloudbase::types::*;
use cloudbase_gateway::cloudbase::{CallContext, CloudBaseError, TransportKind};
use cloudbase_gateway::emulator::EmulatorOptions;
use cloudbase_gateway::secret::Secret;
use common::{code_request, code_token, ctx, pw, start, start_with};
use serde_json::{json, Value};

fn decode_part(jwt: &str, i: usize) -> Value {
    let part = jwt.split('.').nth(i).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

#[actix_web::test]
async fn access_tokens_carry_the_spec_claims() {
    let env = start();
    let c = ctx();
    let creds = env
        .client
        .signin(&c, &pw("alice", "alice-pass-1"))
        .await
        .unwrap();
    let at = creds.access_token.expose();
    let header = decode_part(at, 0);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(
        header["kid"].as_str().unwrap().len(),
        36,
        "a uuid-shaped kid"
    );
    let claims = decode_part(at, 1);
    assert_eq!(claims["sub"], creds.sub.as_str());
    assert_eq!(
        claims["iss"],
        "https://test-env.ap-shanghai.tcb-api.tencentcloudapi.com"
    );
    assert_eq!(claims["aud"], "test-env");
    assert_eq!(claims["project_id"], "test-env");
    assert_eq!(claims["scope"], "user");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        7200
    );
    assert_eq!(claims["meta"], json!({ "wxOpenId": "", "wxUnionId": "" }));
    assert!(claims["nonce"].is_string() && claims["at_hash"].is_string());
    let anon = env.client.signin_anonymously(&ctx(), false).await.unwrap();
    let claims = decode_part(anon.access_token.expose(), 1);
    assert_eq!(
        (claims["scope"].as_str(), claims["is_anonymous"].as_bool()),
        (Some("anonymous"), Some(true))
    );
}

#[actix_web::test]
async fn short_lived_tokens_expire_on_the_emulator_clock() {
    let env = start();
    let c = ctx();
    // verification_token: 600 s.
    let (_, vt) = code_token(
        &env,
        &c,
        Contact::Email("alice@example.com".into()),
        VerificationTarget::Any,
    )
    .await;
    env.advance(601).await;
    let e = env
        .client
        .signin(
            &c,
            &SignInRequest {
                username: "alice".into(),
                password: None,
                verification_token: Some(vt),
            },
        )
        .await
        .unwrap_err();
    assert!(e.is("invalid_argument"), "{e:?}");

    // sudo_token: 900 s.
    let creds = env
        .client
        .signin(&c, &pw("alice", "alice-pass-1"))
        .await
        .unwrap();
    let sudo = env
        .client
        .sudo(
            &c,
            &creds.access_token,
            &SudoProof::Password(Secret::new("alice-pass-1")),
        )
        .await
        .unwrap();
    env.advance(901).await;
    let e = env
        .client
        .set_password(
            &c,
            &creds.access_token,
            &Secret::new("alice-pass-9"),
            &sudo.sudo_token,
        )
        .await
        .unwrap_err();
    assert!(e.is("permission_denied"), "{e:?}");

    // captcha token: 600 s; image: 300 s.
    env.settings(json!({ "captcha_required": true })).await;
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
    env.advance(601).await;
    let e = env
        .client
        .signin(
            &c.with_captcha(solved.captcha_token, None),
            &pw("alice", "alice-pass-1"),
        )
        .await
        .unwrap_err();
    assert!(e.is("captcha_invalid"), "{e:?}");
    let img = env
        .client
        .captcha_data(&c, "POST:/v1/signin")
        .await
        .unwrap();
    let answer = env.captcha_answer(&img.token).await;
    env.advance(301).await;
    assert!(env
        .client
        .captcha_verify(&c, &img.token, &answer)
        .await
        .unwrap_err()
        .is("invalid_argument"));
}

#[actix_web::test]
async fn provider_tokens_expire_and_sign_up_can_be_refused() {
    let env = start();
    let c = ctx();
    let callback = "https://gw.example.com/cb";
    let get_token = |login: &'static str| {
        let env = &env;
        let c = &c;
        async move {
            let uri = env
                .client
                .provider_uri(
                    c,
                    &ProviderUriRequest {
                        provider_id: "google".into(),
                        redirect_uri: callback.into(),
                        state: "s".into(),
                        scope: None,
                    },
                )
                .await
                .unwrap()
                .uri;
            let q: std::collections::HashMap<String, String> = url::Url::parse(&uri)
                .unwrap()
                .query_pairs()
                .into_owned()
                .collect();
            let form = [
                ("provider_id", "google"),
                ("redirect_uri", q["redirect_uri"].as_str()),
                ("state", "s"),
                ("login", login),
                ("decision", "approve"),
            ];
            let resp = env
                .http
                .post(env.url("/__emulator/oauth/authorize"))
                .send_form(&form)
                .await
                .unwrap();
            let back =
                url::Url::parse(resp.headers().get("location").unwrap().to_str().unwrap()).unwrap();
            let code = back
                .query_pairs()
                .find(|(k, _)| k == "code")
                .unwrap()
                .1
                .into_owned();
            env.client
                .provider_token(
                    c,
                    &ProviderTokenRequest {
                        provider_id: "google".into(),
                        provider_redirect_uri: callback.into(),
                        provider_code: Secret::new(code),
                    },
                )
                .await
                .unwrap()
                .provider_token
        }
    };

    // force_disable_sign_up: an unknown identity is not registered.
    let pt = get_token("stranger").await;
    let e = env
        .client
        .signin_with_provider(
            &c,
            &SignInWithProviderRequest {
                provider_token: pt.clone(),
                force_disable_sign_up: true,
                sync_profile: false,
            },
        )
        .await
        .unwrap_err();
    assert!(e.is("not_found"), "{e:?}");

    // Explicit sign-up with a provider token registers the identity.
    let creds = env
        .client
        .signup(
            &c,
            &SignUpRequest {
                provider_token: Some(pt),
                name: Some("Stranger".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let me = env.client.user_me(&c, &creds.access_token).await.unwrap();
    assert_eq!(
        (me.name.as_str(), me.providers[0].id.as_str()),
        ("Stranger", "google")
    );
    // …and afterwards force_disable_sign_up finds the user.
    let pt = get_token("stranger").await;
    let again = env
        .client
        .signin_with_provider(
            &c,
            &SignInWithProviderRequest {
                provider_token: pt,
                force_disable_sign_up: true,
                sync_profile: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(again.sub, creds.sub);

    // provider_token: 3600 s.
    let pt = get_token("late").await;
    env.advance(3601).await;
    let e = env
        .client
        .signin_with_provider(
            &c,
            &SignInWithProviderRequest {
                provider_token: pt,
                force_disable_sign_up: false,
                sync_profile: false,
            },
        )
        .await
        .unwrap_err();
    assert!(e.is("invalid_argument"), "{e:?}");
}

#[actix_web::test]
async fn current_user_codes_and_account_transfer() {
    let env = start();
    let c = ctx();
    let alice = env
        .client
        .signin(&c, &pw("alice", "alice-pass-1"))
        .await
        .unwrap();
    // CUR_USER sends to the signed-in user's own contact, and needs the bearer.
    let sent = env
        .client
        .send_verification(
            &c,
            Some(&alice.access_token),
            &code_request(
                Contact::Email("alice@example.com".into()),
                VerificationTarget::CurUser,
            ),
        )
        .await
        .unwrap();
    assert!(sent.is_user);
    let call = env.requests_to("/auth/v1/verification").await;
    assert_eq!(call[0]["headers"]["authorization"], "Bearer");
    let e = env
        .client
        .send_verification(
            &c,
            Some(&alice.access_token),
            &code_request(
                Contact::Email("bob@example.com".into()),
                VerificationTarget::CurUser,
            ),
        )
        .await
        .unwrap_err();
    assert!(e.is("invalid_argument"), "{e:?}");
    let e = env
        .client
        .send_verification(
            &c,
            None,
            &code_request(
                Contact::Email("alice@example.com".into()),
                VerificationTarget::CurUser,
            ),
        )
        .await
        .unwrap_err();
    assert!(e.is("unauthenticated"), "{e:?}");

    // DELETE_ACCOUNT_TRANSFER: Bob's account goes, his e-mail moves to Alice.
    let bob = env
        .client
        .signin(&ctx(), &pw("bob", "bob-pass-1"))
        .await
        .unwrap();
    let sudo = env
        .client
        .sudo(
            &c,
            &alice.access_token,
            &SudoProof::Password(Secret::new("alice-pass-1")),
        )
        .await
        .unwrap();
    let (_, vt) = code_token(
        &env,
        &c,
        Contact::Email("bob@example.com".into()),
        VerificationTarget::Any,
    )
    .await;
    env.client
        .update_contact(
            &c,
            &alice.access_token,
            &ContactUpdateRequest {
                contact: Contact::Email("bob@example.com".into()),
                sudo_token: sudo.sudo_token,
                verification_token: vt,
                conflict_resolution: Some(ConflictResolution::DeleteAccountTransfer),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        env.client
            .user_me(&c, &alice.access_token)
            .await
            .unwrap()
            .email,
        "bob@example.com"
    );
    assert!(env
        .client
        .user_me(&c, &bob.access_token)
        .await
        .unwrap_err()
        .is("unauthenticated"));
    assert!(env
        .client
        .signin(&c, &pw("bob", "bob-pass-1"))
        .await
        .unwrap_err()
        .is("not_found"));
}

#[actix_web::test]
async fn account_status_applies_to_code_sign_in_too() {
    let env = start();
    let c = ctx();
    let (_, vt) = code_token(
        &env,
        &c,
        Contact::Email("pending@example.com".into()),
        VerificationTarget::Any,
    )
    .await;
    let e = env
        .client
        .signin(
            &c,
            &SignInRequest {
                username: "pending@example.com".into(),
                password: None,
                verification_token: Some(vt),
            },
        )
        .await
        .unwrap_err();
    assert!(e.is("user_pending"), "{e:?}");
}

/// Regression (review): passwords are not trimmed on the way in and compared raw on the way out.
#[actix_web::test]
async fn passwords_keep_their_spaces() {
    let env = start();
    let c = ctx();
    let (_, vt) = code_token(
        &env,
        &c,
        Contact::Email("spacey@example.com".into()),
        VerificationTarget::Any,
    )
    .await;
    env.client
        .signup(
            &c,
            &SignUpRequest {
                email: Some("spacey@example.com".into()),
                verification_token: Some(vt),
                password: Some(Secret::new("  padded pass  ")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    env.client
        .signin(&c, &pw("spacey@example.com", "  padded pass  "))
        .await
        .unwrap();
    assert!(env
        .client
        .signin(&c, &pw("spacey@example.com", "padded pass"))
        .await
        .unwrap_err()
        .is("invalid_password"));
}

/// Regression (review): the provider id goes into the path as the SDK sends it.
#[actix_web::test]
async fn unbind_path_is_not_over_encoded() {
    let env = start();
    let c = ctx();
    let alice = env
        .client
        .signin(&c, &pw("alice", "alice-pass-1"))
        .await
        .unwrap();
    let _ = env
        .client
        .unbind_provider(&c, &alice.access_token, "wx_open")
        .await;
    let _ = env
        .client
        .unbind_provider(&c, &alice.access_token, "a/b")
        .await;
    let paths: Vec<String> = env
        .get_json("/__emulator/requests")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == "DELETE")
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        paths,
        vec![
            "/auth/v1/user/provider/wx_open",
            "/auth/v1/user/provider/a%2Fb"
        ]
    );
}

#[actix_web::test]
async fn captcha_token_header_and_sdk_headers() {
    let env = start();
    env.settings(json!({ "captcha_required": true })).await;
    let c = CallContext {
        language: Some("en-US".into()),
        ..ctx()
    };
    let img = env
        .client
        .captcha_data(&c, "POST:/v1/signin")
        .await
        .unwrap();
    let answer = env.captcha_answer(&img.token).await;
    let token = env
        .client
        .captcha_verify(&c, &img.token, &answer)
        .await
        .unwrap()
        .captcha_token;
    // The documented header alternative to the query parameter.
    let mut resp = env
        .http
        .post(env.url("/auth/v1/signin?client_id=test-env"))
        .insert_header(("x-captcha-token", token.expose()))
        .send_body(r#"{"username":"alice","password":"alice-pass-1"}"#)
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer", "{body}");
    let seen = &env.requests_to("/auth/v1/captcha/data").await[0];
    assert_eq!(seen["headers"]["accept-language"], "en-US");
    assert!(seen["headers"]["x-sdk-version"]
        .as_str()
        .unwrap()
        .starts_with("cloudbase-gateway/"));
}

#[actix_web::test]
async fn oversized_answers_are_transport_errors() {
    let env = start();
    let c = ctx();
    let (status, _) = env
        .post_json(
            "/__emulator/faults",
            json!({ "path": "/auth/v1/user/me", "raw_body": "x".repeat(2 << 20), "status": 200 }),
        )
        .await;
    assert_eq!(status, 200);
    let e = env.client.user_me(&c, &Secret::new("t")).await.unwrap_err();
    assert!(
        matches!(
            e,
            CloudBaseError::Transport {
                kind: TransportKind::TooLarge,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.request_id().len(), 32);
}

#[actix_web::test]
async fn empty_error_answers_are_not_success() {
    let env = start();
    let c = ctx();
    // Regression (review): an empty 503 used to pass as success for revoke.
    env.post_json(
        "/__emulator/faults",
        json!({ "path": "/auth/v1/revoke", "raw_body": "", "status": 503 }),
    )
    .await;
    let e = env.client.revoke(&c, &Secret::new("t")).await.unwrap_err();
    assert!(
        matches!(e, CloudBaseError::Decode { status: 503, .. }),
        "{e:?}"
    );
}

#[actix_web::test]
async fn browsers_get_cors_answers() {
    let env = start();
    let resp = env
        .http
        .request(awc::http::Method::OPTIONS, env.url("/auth/v1/signin"))
        .insert_header(("origin", "http://localhost:5173"))
        .insert_header(("access-control-request-method", "POST"))
        .insert_header((
            "access-control-request-headers",
            "x-device-id,x-request-id,x-sdk-version",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let h = resp.headers();
    assert_eq!(
        h.get("access-control-allow-origin").unwrap(),
        "http://localhost:5173"
    );
    assert_eq!(
        h.get("access-control-allow-headers").unwrap(),
        "x-device-id,x-request-id,x-sdk-version"
    );
    assert!(h
        .get("access-control-allow-methods")
        .unwrap()
        .to_str()
        .unwrap()
        .contains("POST"));
    let resp = env
        .http
        .post(env.url("/auth/v1/signin"))
        .insert_header(("origin", "http://localhost:5173"))
        .send_body(r#"{"username":"alice","password":"alice-pass-1"}"#)
        .await
        .unwrap();
    assert_eq!(
        resp.headers().get("access-control-allow-origin").unwrap(),
        "http://localhost:5173"
    );
    assert!(
        env.requests_to("/auth/v1/signin").await.len() == 1,
        "preflights are not recorded"
    );
}

#[actix_web::test]
async fn forwarded_headers_do_not_steer_emulator_urls() {
    let env = start();
    let mut resp = env
        .http
        .get(env.url("/auth/v1/provider/uri?provider_id=github&redirect_uri=https%3A%2F%2Fa.example.com%2Fcb&state=s"))
        .insert_header(("x-forwarded-host", "evil.example.com"))
        .insert_header(("forwarded", "host=evil.example.com;proto=https"))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["uri"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/__emulator/oauth/authorize", env.emu.url)),
        "{body}"
    );
}

#[actix_web::test]
async fn hooks_refuse_nonsense() {
    let env = start_with(EmulatorOptions::new("test-env"), Duration::from_secs(2));
    let (status, body) = env
        .post_json("/__emulator/clock", json!({ "advance_secs": u64::MAX }))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = env
        .post_json("/__emulator/faults", json!({ "delay": 1500 }))
        .await;
    assert_eq!(
        status, 400,
        "a typo in a fault is refused, not turned into an instant 503"
    );
    // The emulator still works after both.
    let (status, _) = env
        .post_json("/__emulator/clock", json!({ "advance_secs": 1 }))
        .await;
    assert_eq!(status, 200);
    env.client.signin_anonymously(&ctx(), false).await.unwrap();
}
