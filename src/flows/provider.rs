//! Third-party providers (`wx_open`, `wx_mp`, or any source configured in the CloudBase
//! environment): the redirect out (`provider/uri` with our callback and a sealed state) and the
//! way back (state checked and spent → `provider/token` with the same redirect URI and the
//! provider's code → `signin/with/provider`, or `user/provider/bind` when a signed-in user
//! started from the account page).
//!
//! The flow record (the provider, the return URL, the device id, and the user linking, if any)
//! lives in the flow store under the state's nonce, bound to the browser.

use std::time::Duration;

use super::{refused, Change, Ctx, FlowError, Outcome, Pending, Step};
use crate::cloudbase::types::{
    ProviderTokenRequest, ProviderUriRequest, SignInWithProviderRequest,
};
use crate::flow::state::{StateKind, States};
use crate::secret::Secret;

/// A provider redirect in progress.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProviderFlow {
    /// The provider id.
    pub provider_id: String,
    /// The user linking the provider (`None`: a sign-in).
    pub bind_sub: Option<String>,
    /// The validated return URL.
    pub rd: String,
    /// The browser's device id for CloudBase.
    pub device_id: String,
}

/// Whether `id` can be a provider id: 1 to 64 letters, digits, `-`, `_` or `.`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A page CloudBase sends the browser to (a provider's authorization page, a captcha page), as
/// CloudBase gives it: the SDK runs `decodeURIComponent` on `uri`, so an encoded URL is
/// decoded once; anything but an https URL is refused, and plain http passes only with
/// `allow_http` (`insecure_cookie` development, the emulator being http): a page that asks
/// for a password or a WeChat scan must not travel in clear text.
pub fn web_page(uri: &str, allow_http: bool) -> Option<String> {
    let lower = uri.get(..8).unwrap_or(uri).to_ascii_lowercase();
    let decoded = if lower.starts_with("http%3a") || lower.starts_with("https%3a") {
        percent_encoding::percent_decode_str(uri)
            .decode_utf8()
            .ok()?
            .into_owned()
    } else {
        uri.to_string()
    };
    let url = url::Url::parse(&decoded).ok()?;
    let scheme_ok = match url.scheme() {
        "https" => true,
        "http" if allow_http => true,
        "http" => {
            tracing::warn!(
                "CloudBase gave a plain-http page to send the browser to; refused (only https outside insecure_cookie)"
            );
            false
        }
        _ => false,
    };
    (scheme_ok && url.host().is_some()).then(|| url.to_string())
}

/// How recent a sign-in lets a user link a provider without confirming who they are again: a
/// linked provider is a way in that outlives a password reset, so a stolen session must not be
/// able to add one.
pub const RECENT_SIGN_IN: Duration = Duration::from_secs(300);

/// Starts a redirect to `provider_id`: records the flow, seals its state and asks CloudBase for
/// the provider's page (`callback` is where the provider sends the browser back). With `bind`,
/// the signed-in (registered) user links the provider instead of signing in, which needs a
/// sign-in less than [`RECENT_SIGN_IN`] ago (else see [`link_after_sudo`]).
///
/// Returns the URL to send the browser to. Fails with [`FlowError::SignInNeeded`] for a bind
/// without a registered user, [`FlowError::SudoNeeded`] for a bind by an older session,
/// [`FlowError::RateLimited`] over the per-client limit of starts, or CloudBase's refusal
/// (unknown provider).
pub async fn start(
    ctx: &Ctx<'_>,
    provider_id: &str,
    bind: bool,
    rd: String,
    callback: &str,
) -> Result<String, FlowError> {
    let bind_sub = match (bind, ctx.current) {
        (false, _) => None,
        (true, Some(l)) if !l.record.is_anonymous() => {
            if !ctx.sessions.signed_in_within(l, RECENT_SIGN_IN) {
                return Err(FlowError::SudoNeeded);
            }
            Some(l.record.sub.clone())
        }
        (true, _) => return Err(FlowError::SignInNeeded),
    };
    // Each start costs a flow record and a CloudBase call: limited per client before either.
    ctx.limits.start(&ctx.client_ip).await?;
    redirect(ctx, provider_id, bind_sub, rd, callback).await
}

/// Starts linking the provider that the elevated flow `flow` (sudo for [`Change::Link`], of
/// this browser and user) was for, spending the flow.
///
/// Returns the URL to send the browser to. Fails with [`FlowError::StartAgain`] for a missing,
/// used or other flow, [`FlowError::SignInNeeded`], [`FlowError::RateLimited`], or CloudBase's
/// refusal (the confirmation is kept then, for another try).
pub async fn link_after_sudo(
    ctx: &Ctx<'_>,
    flow: &str,
    callback: &str,
) -> Result<String, FlowError> {
    ctx.limits.start(&ctx.client_ip).await?;
    let (taken, elevated) = super::account::take_elevated(ctx, flow).await?;
    let provider = match (elevated.change, elevated.provider) {
        (Change::Link, Some(p)) => p,
        _ => {
            taken.put_back(ctx.flows).await;
            return Err(FlowError::StartAgain);
        }
    };
    let rd = format!("{}/account", crate::web::PREFIX);
    let url = redirect(ctx, &provider, Some(elevated.sub), rd, callback).await;
    if url.is_err() {
        taken.put_back(ctx.flows).await;
    }
    url
}

async fn redirect(
    ctx: &Ctx<'_>,
    provider_id: &str,
    bind_sub: Option<String>,
    rd: String,
    callback: &str,
) -> Result<String, FlowError> {
    let device_id = ctx.device_id();
    let kind = if bind_sub.is_some() {
        StateKind::ProviderBind
    } else {
        StateKind::Provider
    };
    let flow = ProviderFlow {
        provider_id: provider_id.to_string(),
        bind_sub,
        rd: rd.clone(),
        device_id: device_id.clone(),
    };
    let id = ctx
        .flows
        .create(ctx.browser, Pending::Provider(flow))
        .await?;
    let state = ctx.states.mint(kind, &id, &rd, provider_id, ctx.browser);
    let request = ProviderUriRequest {
        provider_id: provider_id.to_string(),
        redirect_uri: callback.to_string(),
        state,
        scope: None,
    };
    let answer = ctx
        .cloudbase
        .provider_uri(&ctx.call(&device_id), &request)
        .await;
    let page = match answer {
        Ok(r) => web_page(&r.uri, ctx.allow_http_pages).ok_or_else(|| {
            tracing::warn!(
                provider = provider_id,
                "provider/uri answered no usable URL"
            );
            FlowError::Refused {
                status: 502,
                message: "err.provider_failed",
                retry_after: None,
            }
        }),
        Err(e) => Err(refused(&e, Step::ProviderUri)),
    };
    if page.is_err() {
        ctx.flows.remove(&id).await;
    } else {
        tracing::info!(
            provider = provider_id,
            bind = kind == StateKind::ProviderBind,
            "provider redirect"
        );
    }
    page
}

/// Checks the callback's `state` and spends it: the flow it names, of this browser, unused,
/// less than ten minutes old, for the provider it names.
///
/// Fails with [`FlowError::BadState`] (the reason is logged here).
pub async fn arrive(
    ctx: &Ctx<'_>,
    states: &States,
    state: &str,
) -> Result<ProviderFlow, FlowError> {
    let claims = states
        .open(
            state,
            &[StateKind::Provider, StateKind::ProviderBind],
            Some(ctx.browser),
        )
        .map_err(|e| super::bad_state(e.reason()))?;
    match ctx.flows.take(&claims.nonce, ctx.browser).await? {
        Some(Pending::Provider(f))
            if f.provider_id == claims.provider
                && f.rd == claims.rd
                && f.bind_sub.is_some() == (claims.kind == StateKind::ProviderBind) =>
        {
            Ok(f)
        }
        Some(_) => Err(super::bad_state("mismatch")),
        None => Err(super::bad_state("used")),
    }
}

/// Exchanges the provider's `code` for a provider token (`provider/token`, with the same
/// redirect URI as the start).
///
/// Fails with `err.provider_failed` when CloudBase or the provider refuse the code.
pub async fn exchange(
    ctx: &Ctx<'_>,
    flow: &ProviderFlow,
    code: Secret,
    callback: &str,
) -> Result<Secret, FlowError> {
    if code.expose().is_empty() || code.expose().len() > 2048 {
        return Err(FlowError::Refused {
            status: 400,
            message: "err.provider_failed",
            retry_after: None,
        });
    }
    let request = ProviderTokenRequest {
        provider_id: flow.provider_id.clone(),
        provider_redirect_uri: callback.to_string(),
        provider_code: code,
    };
    ctx.cloudbase
        .provider_token(&ctx.call(&flow.device_id), &request)
        .await
        .map(|r| r.provider_token)
        .map_err(|e| refused(&e, Step::ProviderToken))
}

/// Signs in with the provider token, or links it to the user `bind_sub`.
///
/// Fails with CloudBase's refusal (no account and sign-up off, identity linked to someone
/// else), [`FlowError::SignInNeeded`] when the linking user's session is gone, or
/// [`FlowError::Captcha`].
pub async fn finish(
    ctx: &Ctx<'_>,
    provider_id: &str,
    provider_token: Secret,
    bind_sub: Option<&str>,
    device_id: &str,
    rd: String,
) -> Result<Outcome, FlowError> {
    match bind_sub {
        None => {
            // The device id the redirect started with, so every call of the flow carries one.
            let device_id = ctx
                .current
                .map(|l| l.record.device_id.clone())
                .unwrap_or_else(|| device_id.to_string());
            let request = SignInWithProviderRequest {
                provider_token,
                force_disable_sign_up: !ctx.sign_up,
                sync_profile: false,
            };
            let creds = ctx
                .cloudbase
                .signin_with_provider(&ctx.call(&device_id), &request)
                .await
                .map_err(|e| refused(&e, Step::ProviderSignIn))?;
            ctx.finish(creds, &device_id, rd, "provider").await
        }
        Some(sub) => {
            let user = match ctx.current {
                Some(l) if l.record.sub == sub => l,
                _ => return Err(FlowError::SignInNeeded),
            };
            ctx.cloudbase
                .bind_provider(
                    &ctx.call(&user.record.device_id),
                    &user.record.access_token,
                    &provider_token,
                )
                .await
                .map_err(|e| refused(&e, Step::Bind))?;
            tracing::info!(sub = %user.record.sub, provider = provider_id, "provider linked");
            super::account::refresh_profile(ctx, user).await;
            Ok(Outcome::AccountUpdated {
                notice: "account.done.linked",
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authorization_page_is_an_http_url_decoded_once() {
        assert_eq!(
            web_page("https://open.weixin.qq.com/connect?x=1", false).as_deref(),
            Some("https://open.weixin.qq.com/connect?x=1")
        );
        assert_eq!(
            web_page("https%3A%2F%2Fgithub.com%2Flogin%3Fa%3D1", false).as_deref(),
            Some("https://github.com/login?a=1")
        );
        assert_eq!(web_page("http://github.com/login", false), None);
        assert_eq!(web_page("http%3A%2F%2Fgithub.com%2Flogin", false), None);
        assert_eq!(
            web_page("http://127.0.0.1:8787/consent", true).as_deref(),
            Some("http://127.0.0.1:8787/consent")
        );
        assert_eq!(web_page("javascript:alert(1)", true), None);
        assert_eq!(web_page("/relative", true), None);
        assert_eq!(web_page("", true), None);
    }

    #[test]
    fn provider_ids() {
        assert!(valid_id("wx_open") && valid_id("github") && valid_id("oidc.corp-1"));
        assert!(
            !valid_id("") && !valid_id("a b") && !valid_id("x/y") && !valid_id(&"a".repeat(65))
        );
    }
}
