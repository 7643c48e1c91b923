//! [`CloudBaseClient`]: the only code that sends HTTP to CloudBase. One async method per
//! endpoint the flows need; requests carry the headers, query parameters and bodies the
//! official SDK sends (spec §2, §10). Nothing secret is logged: spans skip arguments and record
//! the endpoint, status and request id only.

use std::time::{Duration, Instant};

use actix_web::http::Method;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::{parse_response, CloudBaseError, TransportKind};
use super::types::*;
use crate::entropy::SharedEntropy;
use crate::secret::{expose, Secret};

/// Largest response body accepted from CloudBase. Token responses are a few KiB.
const MAX_BODY: usize = 1 << 20;

/// Characters escaped in a path segment: everything but the unreserved set, so a provider id
/// such as `wx_open` goes out as the SDK sends it.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What the client sends as `X-SDK-Version`; the official SDK sends `@cloudbase/js-sdk/{v}`.
const SDK_VERSION: &str = concat!("cloudbase-gateway/", env!("CARGO_PKG_VERSION"));

/// `Authorization: Basic base64(client_id:client_secret)`, as the SDK sends it (the secret is
/// empty for browser apps, giving e.g. `Basic dGVzdC1lbnY6` for `test-env`).
fn basic_auth(client_id: &str, client_secret: &str) -> String {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{client_secret}"));
    format!("Basic {encoded}")
}

/// Per-call context: what ties a call to one browser session.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// `x-device-id`: one per browser session, as the SDK keeps one per browser. Anonymous
    /// users are keyed by it.
    pub device_id: String,
    /// `captcha_token` query parameter, when retrying after a captcha demand.
    pub captcha_token: Option<Secret>,
    /// `x-request-id` to reuse (the SDK reuses it when retrying after a captcha); a fresh one is
    /// generated when absent.
    pub request_id: Option<String>,
    /// `Accept-Language`, e.g. `zh-CN` (the SDK's default) or `en-US`.
    pub language: Option<String>,
}

impl CallContext {
    /// A context for the browser session with this device id.
    pub fn new(device_id: impl Into<String>) -> Self {
        Self {
            device_id: device_id.into(),
            ..Self::default()
        }
    }

    /// The same context retrying with a captcha token and the original request id.
    pub fn with_captcha(&self, token: Secret, request_id: Option<String>) -> Self {
        Self {
            captcha_token: Some(token),
            request_id: request_id.or_else(|| self.request_id.clone()),
            ..self.clone()
        }
    }
}

/// How a call authenticates (spec §5 legend).
#[derive(Clone, Copy)]
enum Auth<'a> {
    /// No Authorization header; `client_id` goes in the query.
    None,
    /// `Authorization: Bearer <access token>`; no `client_id`.
    Bearer(&'a Secret),
    /// `Authorization: Basic base64(client_id:client_secret)`; `client_id` in the query.
    Basic,
}

/// Settings for [`CloudBaseClient::new`].
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Scheme, host and port of the auth API.
    pub origin: url::Url,
    /// OAuth client id (the env id by default).
    pub client_id: String,
    /// Client secret, if any; `""` is sent where the SDK sends it.
    pub client_secret: Option<Secret>,
    /// Deadline for one call, connect to last byte.
    pub timeout: Duration,
}

impl ClientSettings {
    /// Settings from the validated configuration.
    pub fn from_config(cfg: &crate::config::CloudBaseSettings) -> Self {
        Self {
            origin: cfg.api_origin.clone(),
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone(),
            timeout: cfg.timeout,
        }
    }
}

/// A CloudBase auth API client with a pooled connection set. Cheap to clone. It is bound to the
/// actix runtime thread that created it, like every `awc` client.
#[derive(Clone)]
pub struct CloudBaseClient {
    http: awc::Client,
    origin: String,
    client_id: String,
    client_secret: Option<Secret>,
    timeout: Duration,
    entropy: SharedEntropy,
    observer: Option<std::sync::Arc<dyn CallObserver>>,
}

/// Told about every finished call (for metrics).
pub trait CallObserver: Send + Sync {
    /// `endpoint` is the path template, `error` the CloudBase error code (or the transport
    /// kind) when the call failed.
    fn observe(&self, endpoint: &str, elapsed: Duration, error: Option<&str>);
}

impl std::fmt::Debug for CloudBaseClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudBaseClient")
            .field("origin", &self.origin)
            .field("client_id", &self.client_id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct RefreshBody<'a> {
    client_id: &'a str,
    client_secret: &'a str,
    grant_type: &'static str,
    #[serde(serialize_with = "expose")]
    refresh_token: &'a Secret,
}

#[derive(Serialize)]
struct TokenBody<'a> {
    #[serde(serialize_with = "expose")]
    token: &'a Secret,
}

#[derive(Serialize)]
struct SignInCustomBody<'a> {
    provider_id: &'static str,
    #[serde(serialize_with = "expose")]
    ticket: &'a Secret,
}

#[derive(Serialize)]
struct VerifyBody<'a> {
    verification_id: &'a str,
    #[serde(serialize_with = "expose")]
    verification_code: &'a Secret,
}

#[derive(Serialize)]
struct ProviderTokenOnly<'a> {
    #[serde(serialize_with = "expose")]
    provider_token: &'a Secret,
}

#[derive(Serialize)]
struct SetPasswordBody<'a> {
    #[serde(serialize_with = "expose")]
    new_password: &'a Secret,
    #[serde(serialize_with = "expose")]
    sudo_token: &'a Secret,
}

#[derive(Serialize)]
struct SignOutBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect_uri: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a str>,
}

#[derive(Serialize)]
struct CaptchaInitBody<'a> {
    client_id: &'a str,
    redirect_uri: &'a str,
    state: &'a str,
}

#[derive(Serialize)]
struct CaptchaDataBody<'a> {
    state: &'a str,
    redirect_uri: &'static str,
}

#[derive(Serialize)]
struct CaptchaVerifyBody<'a> {
    token: &'a str,
    key: &'a str,
}

#[derive(Serialize)]
struct Empty {}

/// Any JSON object; for endpoints whose answer is ignored (`{}` in practice).
#[derive(Deserialize)]
struct Ignored {}

#[derive(Deserialize)]
struct ExistBody {
    #[serde(default)]
    exist: bool,
}

impl CloudBaseClient {
    /// A client for `settings`. Must be called on an actix (or tokio local-set) runtime thread.
    pub fn new(settings: ClientSettings, entropy: SharedEntropy) -> Self {
        let connector =
            awc::Connector::new().timeout(settings.timeout.min(Duration::from_secs(10)));
        let http = awc::Client::builder()
            .connector(connector)
            .timeout(settings.timeout)
            .disable_redirects()
            .finish();
        Self {
            http,
            origin: settings.origin.as_str().trim_end_matches('/').to_string(),
            client_id: settings.client_id,
            client_secret: settings.client_secret,
            timeout: settings.timeout,
            entropy,
            observer: None,
        }
    }

    /// The same client reporting every call to `observer`.
    pub fn with_observer(mut self, observer: std::sync::Arc<dyn CallObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    fn secret_str(&self) -> &str {
        self.client_secret
            .as_ref()
            .map(Secret::expose)
            .unwrap_or("")
    }

    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(name = "cloudbase", skip_all, fields(endpoint = endpoint, status, request_id))]
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        ctx: &CallContext,
        method: Method,
        endpoint: &'static str,
        path: &str,
        query: &[(&str, &str)],
        auth: Auth<'_>,
        body: Option<&B>,
    ) -> Result<T, CloudBaseError> {
        let request_id = ctx
            .request_id
            .clone()
            .unwrap_or_else(|| self.entropy.hex_id());
        tracing::Span::current().record("request_id", request_id.as_str());

        let transport = |kind| CloudBaseError::Transport {
            endpoint,
            kind,
            request_id: request_id.clone(),
        };
        let timed_out = || CloudBaseError::Timeout {
            endpoint,
            timeout: self.timeout,
            request_id: request_id.clone(),
        };

        let mut url = url::Url::parse(&format!("{}{}", self.origin, path))
            .map_err(|_| transport(TransportKind::Connect))?;
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                if !v.is_empty() {
                    pairs.append_pair(k, v);
                }
            }
            if let Some(token) = &ctx.captcha_token {
                pairs.append_pair("captcha_token", token.expose());
            }
            // The SDK adds client_id to every call that carries no bearer token.
            if !matches!(auth, Auth::Bearer(_)) && !query.iter().any(|(k, _)| *k == "client_id") {
                pairs.append_pair("client_id", &self.client_id);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }

        let mut req = self
            .http
            .request(method, url.as_str())
            .insert_header(("x-request-id", request_id.as_str()))
            .insert_header(("x-sdk-version", SDK_VERSION))
            .insert_header((
                "accept-language",
                ctx.language.as_deref().unwrap_or("zh-CN"),
            ))
            .insert_header(("accept", "application/json"));
        // An empty header would be a lie; without one CloudBase answers invalid_argument where
        // a device id is required.
        if !ctx.device_id.is_empty() {
            req = req.insert_header(("x-device-id", ctx.device_id.as_str()));
        }
        match auth {
            Auth::None => {}
            Auth::Bearer(token) => {
                req = req.insert_header(("authorization", format!("Bearer {}", token.expose())));
            }
            Auth::Basic => {
                req = req.insert_header((
                    "authorization",
                    basic_auth(&self.client_id, self.secret_str()),
                ));
            }
        }

        let started = Instant::now();
        let exchange = async {
            let sent = match body {
                Some(b) => {
                    let bytes = serde_json::to_vec(b).map_err(|_| transport(TransportKind::Io))?;
                    req.insert_header(("content-type", "application/json"))
                        .send_body(bytes)
                        .await
                }
                None => req.send().await,
            };
            use awc::error::{ConnectError, SendRequestError};
            let mut resp = sent.map_err(|e| match e {
                SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout) => {
                    timed_out()
                }
                // The pool reports a connection closed before the answer as "disconnected".
                SendRequestError::Connect(ConnectError::Disconnected) => {
                    transport(TransportKind::Io)
                }
                SendRequestError::Connect(_) | SendRequestError::Url(_) => {
                    transport(TransportKind::Connect)
                }
                _ => transport(TransportKind::Io),
            })?;
            let status = resp.status().as_u16();
            let bytes = resp.body().limit(MAX_BODY).await.map_err(|e| match e {
                awc::error::PayloadError::Overflow => transport(TransportKind::TooLarge),
                _ => transport(TransportKind::Io),
            })?;
            Ok::<_, CloudBaseError>((status, bytes))
        };
        // awc's own timeout covers sending and headers; this one also covers the body.
        let outcome = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(timed_out()),
        };
        let (status, bytes) = match outcome {
            Ok(x) => x,
            Err(e) => {
                if let Some(o) = &self.observer {
                    o.observe(endpoint, started.elapsed(), Some("unreachable"));
                }
                return Err(e);
            }
        };
        tracing::Span::current().record("status", status);
        let result = parse_response(endpoint, status, &bytes, &request_id);
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            error = result.as_ref().err().and_then(|e| e.code()),
            "cloudbase call"
        );
        if let Some(o) = &self.observer {
            let code = result
                .as_ref()
                .err()
                .map(|e| e.code().unwrap_or("transport"));
            o.observe(endpoint, started.elapsed(), code);
        }
        result
    }

    /// `POST /auth/v1/signin`: password or verification-token sign-in.
    ///
    /// Fails with API errors such as `not_found`, `invalid_password`, `password_not_set`,
    /// `user_blocked`, `user_pending`, `invalid_status`, `captcha_required`.
    pub async fn signin(
        &self,
        ctx: &CallContext,
        req: &SignInRequest,
    ) -> Result<Credentials, CloudBaseError> {
        self.call(
            ctx,
            Method::POST,
            "/auth/v1/signin",
            "/auth/v1/signin",
            &[],
            Auth::None,
            Some(req),
        )
        .await
    }

    /// `POST /auth/v1/signin/anonymously` with the context's device id. `basic_auth` is set when
    /// re-signing in after a failed refresh, as the SDK does.
    ///
    /// Fails with `invalid_argument` (no device id) or `unimplemented` (anonymous sign-in off).
    pub async fn signin_anonymously(
        &self,
        ctx: &CallContext,
        basic_auth: bool,
    ) -> Result<Credentials, CloudBaseError> {
        let auth = if basic_auth { Auth::Basic } else { Auth::None };
        self.call(
            ctx,
            Method::POST,
            "/auth/v1/signin/anonymously",
            "/auth/v1/signin/anonymously",
            &[],
            auth,
            Some(&Empty {}),
        )
        .await
    }

    /// `POST /auth/v1/signup`: registers (or upgrades an anonymous user) and signs in.
    ///
    /// Fails with `failed_precondition` (already registered) or `invalid_argument`.
    pub async fn signup(
        &self,
        ctx: &CallContext,
        req: &SignUpRequest,
    ) -> Result<Credentials, CloudBaseError> {
        self.call(
            ctx,
            Method::POST,
            "/auth/v1/signup",
            "/auth/v1/signup",
            &[],
            Auth::None,
            Some(req),
        )
        .await
    }

    /// `POST /auth/v1/signin/custom` with a custom-login ticket.
    pub async fn signin_custom(
        &self,
        ctx: &CallContext,
        ticket: &Secret,
    ) -> Result<Credentials, CloudBaseError> {
        let body = SignInCustomBody {
            provider_id: "custom",
            ticket,
        };
        self.call(
            ctx,
            Method::POST,
            "/auth/v1/signin/custom",
            "/auth/v1/signin/custom",
            &[],
            Auth::None,
            Some(&body),
        )
        .await
    }

    /// `POST /auth/v1/signin/with/provider` with a provider token.
    pub async fn signin_with_provider(
        &self,
        ctx: &CallContext,
        req: &SignInWithProviderRequest,
    ) -> Result<Credentials, CloudBaseError> {
        self.call(
            ctx,
            Method::POST,
            "/auth/v1/signin/with/provider",
            "/auth/v1/signin/with/provider",
            &[],
            Auth::None,
            Some(req),
        )
        .await
    }

    /// `POST /auth/v1/token` with grant `refresh_token`, exactly as the SDK refreshes. The
    /// answer carries a new refresh token; the old one is dead from then on.
    ///
    /// Fails with `invalid_grant` for an unknown, expired or already-rotated refresh token.
    pub async fn refresh(
        &self,
        ctx: &CallContext,
        refresh_token: &Secret,
    ) -> Result<Credentials, CloudBaseError> {
        let body = RefreshBody {
            client_id: &self.client_id,
            client_secret: self.secret_str(),
            grant_type: "refresh_token",
            refresh_token,
        };
        self.call(
            ctx,
            Method::POST,
            "/auth/v1/token",
            "/auth/v1/token",
            &[],
            Auth::None,
            Some(&body),
        )
        .await
    }

    /// `POST /auth/v1/revoke`: signs out by revoking the access token (sent in the body).
    pub async fn revoke(
        &self,
        ctx: &CallContext,
        access_token: &Secret,
    ) -> Result<(), CloudBaseError> {
        let _: Ignored = self
            .call(
                ctx,
                Method::POST,
                "/auth/v1/revoke",
                "/auth/v1/revoke",
                &[],
                Auth::None,
                Some(&TokenBody {
                    token: access_token,
                }),
            )
            .await?;
        Ok(())
    }

    /// `DELETE /auth/v1/user/revoke/all`: ends every session of the token's user, on every
    /// device (the SDK's `revokeAllDevices`).
    pub async fn revoke_all(
        &self,
        ctx: &CallContext,
        access_token: &Secret,
    ) -> Result<(), CloudBaseError> {
        let _: Ignored = self
            .call::<Empty, _>(
                ctx,
                Method::DELETE,
                "/auth/v1/user/revoke/all",
                "/auth/v1/user/revoke/all",
                &[],
                Auth::Bearer(access_token),
                None,
            )
            .await?;
        Ok(())
    }

    /// `POST /auth/v1/user/signout`: signs out and returns the identity source's sign-out page,
    /// if any.
    pub async fn user_signout(
        &self,
        ctx: &CallContext,
        access_token: &Secret,
        redirect_uri: Option<&str>,
        state: Option<&str>,
    ) -> Result<SignOutResponse, CloudBaseError> {
        self.call(
            ctx,
            Method::POST,
            "/auth/v1/user/signout",
            "/auth/v1/user/signout",
            &[],
            Auth::Bearer(access_token),
            Some(&SignOutBody {
                redirect_uri,
                state,
            }),
        )
        .await
    }

    /// `GET /auth/v1/user/me`.
    ///
    /// Fails with `unauthenticated` when the token is invalid, expired or revoked.
    pub async fn user_me(
        &self,
        ctx: &CallContext,
        access_token: &Secret,
    ) -> Result<UserProfile, CloudBaseError> {
        self.call::<Empty, _>(
            ctx,
            Method::GET,
            "/auth/v1/user/me",
            "/auth/v1/user/me",
            &[],
            Auth::Bearer(access_token),
            None,
        )
        .await
    }

    /// `POST /auth/v1/verification`: sends a code. With `access_token` the call carries the
    /// bearer, as the SDK does whenever it holds a session (required for `CUR_USER`).
    ///
    /// Fails with `captcha_required`, `resource_exhausted`, `not_found` (`USER` target) or
    /// `failed_precondition` (`NOT_USER` target).
    pub async fn send_verification(
        &self,
        ctx: &CallContext,
        access_token: Option<&Secret>,
        req: &VerificationRequest,
    ) -> Result<VerificationResponse, CloudBaseError> {
        let auth = access_token.map(Auth::Bearer).unwrap_or(Auth::None);
        self.call(
            ctx,
            Method::POST,
            "/auth/v1/verification",
            "/auth/v1/verification",
            &[],
            auth,
            Some(req),
        )
        .await
    }

    /// `POST /auth/v1/verification/verify`: checks a code.
    ///
    /// Fails with `invalid_argument` (wrong, expired or used code) or `aborted` (too many tries).
    pub async fn verify(
        &self,
        ctx: &CallContext,
        verification_id: &str,
        code: &Secret,
    ) -> Result<VerifyResponse, CloudBaseError> {
        let body = VerifyBody {
            verification_id,
            verification_code: code,
        };
        self.call(
            ctx,
            Method::POST,
            "/auth/v1/verification/verify",
            "/auth/v1/verification/verify",
            &[],
            Auth::None,
            Some(&body),
        )
        .await
    }

    /// `GET /auth/v1/provider/uri`: the provider's authorization page for a redirect flow.
    pub async fn provider_uri(
        &self,
        ctx: &CallContext,
        req: &ProviderUriRequest,
    ) -> Result<ProviderUriResponse, CloudBaseError> {
        let mut query = vec![
            ("provider_id", req.provider_id.as_str()),
            ("redirect_uri", req.redirect_uri.as_str()),
            ("state", req.state.as_str()),
        ];
        if let Some(scope) = &req.scope {
            query.push(("scope", scope.as_str()));
        }
        self.call::<Empty, _>(
            ctx,
            Method::GET,
            "/auth/v1/provider/uri",
            "/auth/v1/provider/uri",
            &query,
            Auth::None,
            None,
        )
        .await
    }

    /// `POST /auth/v1/provider/token`: exchanges the provider's code for a provider token.
    ///
    /// Fails with `invalid_argument` (bad code or redirect URI), `failed_precondition` or
    /// `provider_error`.
    pub async fn provider_token(
        &self,
        ctx: &CallContext,
        req: &ProviderTokenRequest,
    ) -> Result<ProviderTokenResponse, CloudBaseError> {
        self.call(
            ctx,
            Method::POST,
            "/auth/v1/provider/token",
            "/auth/v1/provider/token",
            &[],
            Auth::None,
            Some(req),
        )
        .await
    }

    /// `POST /auth/v1/user/sudo`: an elevated token for account changes.
    pub async fn sudo(
        &self,
        ctx: &CallContext,
        access_token: &Secret,
        proof: &SudoProof,
    ) -> Result<SudoResponse, CloudBaseError> {
        self.call(
            ctx,
            Method::POST,
            "/auth/v1/user/sudo",
            "/auth/v1/user/sudo",
            &[],
            Auth::Bearer(access_token),
            Some(proof),
        )
        .await
    }

    /// `PATCH /auth/v1/user/contact`: binds or changes the user's e-mail or phone.
    pub async fn update_contact(
        &self,
        ctx: &CallContext,
        access_token: &Secret,
        req: &ContactUpdateRequest,
    ) -> Result<(), CloudBaseError> {
        let _: Ignored = self
            .call(
                ctx,
                Method::PATCH,
                "/auth/v1/user/contact",
                "/auth/v1/user/contact",
                &[],
                Auth::Bearer(access_token),
                Some(req),
            )
            .await?;
        Ok(())
    }

    /// `PATCH /auth/v1/user/password`: sets a new password (needs a sudo token).
    pub async fn set_password(
        &self,
        ctx: &CallContext,
        access_token: &Secret,
        new_password: &Secret,
        sudo_token: &Secret,
    ) -> Result<(), CloudBaseError> {
        let _: Ignored = self
            .call(
                ctx,
                Method::PATCH,
                "/auth/v1/user/password",
                "/auth/v1/user/password",
                &[],
                Auth::Bearer(access_token),
                Some(&SetPasswordBody {
                    new_password,
                    sudo_token,
                }),
            )
            .await?;
        Ok(())
    }

    /// `POST /auth/v1/reset`: resets a forgotten password with a verification token.
    pub async fn reset_password(
        &self,
        ctx: &CallContext,
        req: &ResetPasswordRequest,
    ) -> Result<(), CloudBaseError> {
        let _: Ignored = self
            .call(
                ctx,
                Method::POST,
                "/auth/v1/reset",
                "/auth/v1/reset",
                &[],
                Auth::None,
                Some(req),
            )
            .await?;
        Ok(())
    }

    /// `GET /auth/v1/user/provider`: the identity sources and whether the user linked each.
    pub async fn list_providers(
        &self,
        ctx: &CallContext,
        access_token: &Secret,
    ) -> Result<ProviderList, CloudBaseError> {
        self.call::<Empty, _>(
            ctx,
            Method::GET,
            "/auth/v1/user/provider",
            "/auth/v1/user/provider",
            &[],
            Auth::Bearer(access_token),
            None,
        )
        .await
    }

    /// `POST /auth/v1/user/provider/bind`: links a provider identity to the signed-in user.
    ///
    /// Fails with `failed_precondition` when the identity belongs to another user.
    pub async fn bind_provider(
        &self,
        ctx: &CallContext,
        access_token: &Secret,
        provider_token: &Secret,
    ) -> Result<(), CloudBaseError> {
        let _: Ignored = self
            .call(
                ctx,
                Method::POST,
                "/auth/v1/user/provider/bind",
                "/auth/v1/user/provider/bind",
                &[],
                Auth::Bearer(access_token),
                Some(&ProviderTokenOnly { provider_token }),
            )
            .await?;
        Ok(())
    }

    /// `DELETE /auth/v1/user/provider/{provider_id}`: unlinks a provider.
    pub async fn unbind_provider(
        &self,
        ctx: &CallContext,
        access_token: &Secret,
        provider_id: &str,
    ) -> Result<(), CloudBaseError> {
        let path = format!(
            "/auth/v1/user/provider/{}",
            percent_encoding::utf8_percent_encode(provider_id, PATH_SEGMENT)
        );
        let _: Ignored = self
            .call::<Empty, _>(
                ctx,
                Method::DELETE,
                "/auth/v1/user/provider/{provider_id}",
                &path,
                &[],
                Auth::Bearer(access_token),
                None,
            )
            .await?;
        Ok(())
    }

    /// `POST /auth/v1/captcha/init` (redirect captcha): a token at once, or the captcha page.
    /// Sent with Basic `client_id:client_secret`, as CloudBase's docs show.
    pub async fn captcha_init(
        &self,
        ctx: &CallContext,
        redirect_uri: &str,
        state: &str,
    ) -> Result<CaptchaInitResponse, CloudBaseError> {
        let body = CaptchaInitBody {
            client_id: &self.client_id,
            redirect_uri,
            state,
        };
        self.call(
            ctx,
            Method::POST,
            "/auth/v1/captcha/init",
            "/auth/v1/captcha/init",
            &[],
            Auth::Basic,
            Some(&body),
        )
        .await
    }

    /// `POST /auth/v1/captcha/data` (image captcha) for the call `"<METHOD>:<path>"`, e.g.
    /// `POST:/v1/verification`, as the SDK names it.
    pub async fn captcha_data(
        &self,
        ctx: &CallContext,
        for_call: &str,
    ) -> Result<CaptchaImage, CloudBaseError> {
        let body = CaptchaDataBody {
            state: for_call,
            redirect_uri: "",
        };
        self.call(
            ctx,
            Method::POST,
            "/auth/v1/captcha/data",
            "/auth/v1/captcha/data",
            &[],
            Auth::None,
            Some(&body),
        )
        .await
    }

    /// `POST /auth/v1/captcha/data/verify`: the user's reading of the image → a captcha token.
    pub async fn captcha_verify(
        &self,
        ctx: &CallContext,
        token: &str,
        key: &str,
    ) -> Result<CaptchaToken, CloudBaseError> {
        self.call(
            ctx,
            Method::POST,
            "/auth/v1/captcha/data/verify",
            "/auth/v1/captcha/data/verify",
            &[],
            Auth::None,
            Some(&CaptchaVerifyBody { token, key }),
        )
        .await
    }

    /// `GET /auth/v1/checkIfUserExist?username=…`: whether the user name is taken.
    pub async fn check_if_user_exist(
        &self,
        ctx: &CallContext,
        username: &str,
    ) -> Result<bool, CloudBaseError> {
        let body: ExistBody = self
            .call::<Empty, _>(
                ctx,
                Method::GET,
                "/auth/v1/checkIfUserExist",
                "/auth/v1/checkIfUserExist",
                &[("username", username)],
                Auth::None,
                None,
            )
            .await?;
        Ok(body.exist)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_matches_the_sdk() {
        assert_eq!(basic_auth("test-env", ""), "Basic dGVzdC1lbnY6");
        assert_eq!(basic_auth("cid", "sec"), "Basic Y2lkOnNlYw==");
    }

    #[test]
    fn bodies_are_exactly_what_the_sdk_sends() {
        let rt = Secret::new("m.rt");
        let refresh = RefreshBody {
            client_id: "test-env",
            client_secret: "",
            grant_type: "refresh_token",
            refresh_token: &rt,
        };
        assert_eq!(
            serde_json::to_string(&refresh).unwrap(),
            r#"{"client_id":"test-env","client_secret":"","grant_type":"refresh_token","refresh_token":"m.rt"}"#
        );
        let at = Secret::new("at");
        assert_eq!(
            serde_json::to_string(&TokenBody { token: &at }).unwrap(),
            r#"{"token":"at"}"#
        );
        assert_eq!(
            serde_json::to_string(&CaptchaDataBody {
                state: "POST:/v1/verification",
                redirect_uri: ""
            })
            .unwrap(),
            r#"{"state":"POST:/v1/verification","redirect_uri":""}"#
        );
        assert_eq!(serde_json::to_string(&Empty {}).unwrap(), "{}");
        let ticket = Secret::new("k/@@/jwt");
        assert_eq!(
            serde_json::to_string(&SignInCustomBody {
                provider_id: "custom",
                ticket: &ticket
            })
            .unwrap(),
            r#"{"provider_id":"custom","ticket":"k/@@/jwt"}"#
        );
    }
}
