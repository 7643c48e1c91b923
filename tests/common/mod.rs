//! Shared helpers for the integration tests: an emulator on an ephemeral port, a client
//! pointed at it, and small HTTP helpers for the `/__emulator/*` hooks.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use cloudbase_gateway::cloudbase::types::{
    Contact, SignInRequest, VerificationRequest, VerificationResponse, VerificationTarget,
};
use cloudbase_gateway::cloudbase::{CallContext, ClientSettings, CloudBaseClient};
use cloudbase_gateway::emulator::{self, EmulatorOptions, RunningEmulator, SeedUser};
use cloudbase_gateway::entropy::OsEntropy;
use cloudbase_gateway::secret::Secret;
use serde_json::Value;

pub struct Env {
    pub emu: RunningEmulator,
    pub client: CloudBaseClient,
    pub http: awc::Client,
}

pub fn user(username: &str, email: &str, phone: &str, password: Option<&str>) -> SeedUser {
    SeedUser {
        username: Some(username.into()),
        email: Some(email.into()),
        phone_number: Some(phone.into()),
        password: password.map(str::to_string),
        name: Some(format!("{username} name")),
        groups: vec!["staff".into()],
        status: None,
    }
}

pub fn default_users() -> Vec<SeedUser> {
    vec![
        user(
            "alice",
            "alice@example.com",
            "+86 13800000001",
            Some("alice-pass-1"),
        ),
        user("bob", "bob@example.com", "13800000002", Some("bob-pass-1")),
        user("nopass", "nopass@example.com", "+86 13800000003", None),
        SeedUser {
            status: Some("BLOCKED".into()),
            ..user(
                "blocked",
                "blocked@example.com",
                "+86 13800000004",
                Some("blocked-pass"),
            )
        },
        SeedUser {
            status: Some("PENDING".into()),
            ..user(
                "pending",
                "pending@example.com",
                "+86 13800000005",
                Some("pending-pass"),
            )
        },
    ]
}

/// An emulator for env `test-env` with the default users, and a client with a 2 s timeout.
pub fn start() -> Env {
    let mut opts = EmulatorOptions::new("test-env");
    opts.users = default_users();
    start_with(opts, Duration::from_secs(2))
}

pub fn start_with(opts: EmulatorOptions, timeout: Duration) -> Env {
    let emu = emulator::spawn(opts, Arc::new(OsEntropy)).expect("emulator starts");
    let client = CloudBaseClient::new(
        ClientSettings {
            origin: url::Url::parse(&emu.url).unwrap(),
            client_id: "test-env".into(),
            client_secret: None,
            timeout,
        },
        Arc::new(OsEntropy),
    );
    let http = awc::Client::builder()
        .disable_redirects()
        .timeout(Duration::from_secs(5))
        .finish();
    Env { emu, client, http }
}

/// A context for a fresh "browser": its own device id.
pub fn ctx() -> CallContext {
    use cloudbase_gateway::entropy::Entropy;
    CallContext::new(OsEntropy.hex_id())
}

impl Env {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.emu.url, path)
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let mut resp = self.http.get(self.url(path)).send().await.expect("GET");
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json::<Value>().limit(16 << 20).await.expect("JSON")
    }

    pub async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let mut resp = self
            .http
            .post(self.url(path))
            .send_json(&body)
            .await
            .expect("POST");
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.expect("JSON"))
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.http
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE")
            .status()
            .as_u16()
    }

    /// The newest code sent to `to`, from `/__emulator/outbox`.
    pub async fn code_for(&self, to: &str) -> String {
        let outbox = self.get_json("/__emulator/outbox").await;
        outbox
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|m| m["to"] == to)
            .unwrap_or_else(|| panic!("no code for {to} in {outbox}"))["code"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The answer of the image captcha `token`, from `/__emulator/captchas`.
    pub async fn captcha_answer(&self, token: &str) -> String {
        let captchas = self.get_json("/__emulator/captchas").await;
        captchas
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["token"] == token)
            .unwrap_or_else(|| panic!("no captcha {token} in {captchas}"))["answer"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Recorded requests to `path`.
    pub async fn requests_to(&self, path: &str) -> Vec<Value> {
        let all = self.get_json("/__emulator/requests").await;
        all.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["path"] == path)
            .cloned()
            .collect()
    }

    pub async fn advance(&self, secs: u64) {
        let (status, _) = self
            .post_json(
                "/__emulator/clock",
                serde_json::json!({ "advance_secs": secs }),
            )
            .await;
        assert_eq!(status, 200);
    }

    pub async fn settings(&self, body: Value) {
        let (status, _) = self.post_json("/__emulator/settings", body).await;
        assert_eq!(status, 200);
    }
}

/// A context whose device id is empty, as a broken client would send.
pub fn ctx_without_device() -> CallContext {
    CallContext::new("")
}

/// A password sign-in body.
pub fn pw(login: &str, password: &str) -> SignInRequest {
    SignInRequest {
        username: login.into(),
        password: Some(Secret::new(password)),
        verification_token: None,
    }
}

/// A `verification` body.
pub fn code_request(contact: Contact, target: VerificationTarget) -> VerificationRequest {
    VerificationRequest {
        contact,
        target,
        usage: None,
    }
}

/// Sends a code to `contact`, reads it from the outbox hook and verifies it: the answer of
/// `verification` and the verification token.
pub async fn code_token(
    env: &Env,
    c: &CallContext,
    contact: Contact,
    target: VerificationTarget,
) -> (VerificationResponse, Secret) {
    let sent = env
        .client
        .send_verification(c, None, &code_request(contact.clone(), target))
        .await
        .unwrap();
    assert_eq!(sent.expires_in, 600);
    let code = env.code_for(contact.value()).await;
    assert_eq!(code.len(), 6);
    let verified = env
        .client
        .verify(c, &sent.verification_id, &Secret::new(code))
        .await
        .unwrap();
    (sent, verified.verification_token)
}
