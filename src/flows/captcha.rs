//! What happens when CloudBase asks for a captcha (`captcha_required` or `captcha_invalid`) in
//! the middle of a step: the step (which form, what was typed, the return URL) goes to the flow
//! store, sealed whole, since it may hold a password or a code; then the captcha:
//!
//! - redirect mode: `captcha/init` with our callback and a sealed state; a `captcha_token` in
//!   the answer means retry at once, a `url` is the captcha page to send the browser to, which
//!   comes back to `/__auth/captcha/callback` with a token or an error;
//! - image mode: `captcha/data` gives a picture shown in our page; the characters read go to
//!   `captcha/data/verify` for a token.
//!
//! The web layer then runs the step again, once, with the token. Solved tokens are kept per
//! browser until they expire (less ten seconds), and tried first when a later step asks for a
//! captcha, as the SDK does. The round counter lets a refused retry get one fresh captcha
//! before the step gives up.

use std::sync::Arc;
use std::time::Duration;

use super::{refused, Ctx, FlowError, Pending, Step};
use crate::clock::SharedClock;
use crate::flow::state::StateKind;
use crate::flow::store::Browser;
use crate::secret::Secret;
use crate::store::StoreError;

/// The form posts a captcha can interrupt; the web layer knows how to run each again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Resumable {
    /// Password sign-in.
    Password,
    /// A sign-in code by e-mail.
    EmailCode,
    /// A sign-in code by SMS.
    SmsCode,
    /// Guest sign-in.
    Anonymous,
    /// The sign-up form (sends a code).
    SignUp,
    /// The forgotten-password form (sends a code).
    Forgot,
    /// The code page.
    CodeSubmit,
    /// "Send a new code".
    CodeResend,
    /// "Confirm it's you".
    Sudo,
    /// A new e-mail or phone (sends a code).
    Change,
    /// The end of a provider redirect (`signin/with/provider` or the bind).
    Provider,
}

/// How the gateway shows captchas (`captcha_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// CloudBase's captcha page, by redirect (`captcha/init`).
    Redirect,
    /// A picture in the gateway's own page (`captcha/data`).
    Image,
}

/// A picture to read.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Image {
    /// `data:image/...;base64,...`
    pub data: String,
    token: String,
}

/// A step waiting for a captcha.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct CaptchaFlow {
    /// Which form.
    pub step: Resumable,
    /// The validated return URL.
    pub rd: String,
    /// Captchas shown so far for this step (1 or 2).
    pub round: u8,
    /// The call that asked.
    pub endpoint: String,
    /// The picture (image mode).
    pub image: Option<Image>,
    /// Wrong readings of pictures so far.
    pub wrong: u8,
    /// Who was signed in when the step was interrupted (it runs again only for them).
    pub sub: Option<String>,
    sealed: Arc<Vec<u8>>,
}

impl std::fmt::Debug for CaptchaFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptchaFlow")
            .field("step", &self.step)
            .field("round", &self.round)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Wrong readings of a picture before the step gives up.
const MAX_WRONG: u8 = 3;

/// What to do for a captcha.
#[derive(Debug)]
pub enum Challenge {
    /// No challenge needed: retry now with this token.
    Token(Secret, u64),
    /// Send the browser to CloudBase's captcha page.
    Redirect(String),
    /// Show the picture of this flow id.
    Image(String),
}

/// A step to run again, out of the flow store.
pub struct Resume {
    /// The step.
    pub flow: CaptchaFlow,
    /// The form as it was posted (passwords included: run it, never show it).
    pub fields: Vec<(String, String)>,
}

impl std::fmt::Debug for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The fields hold passwords, codes and provider tokens: names only.
        f.debug_struct("Resume")
            .field("flow", &self.flow)
            .field(
                "fields",
                &self.fields.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// What a picture's reading gave.
#[derive(Debug)]
pub enum Solved {
    /// Right: retry with this token, valid this many seconds.
    Token(Resume, Secret, u64),
    /// Wrong: a new picture is in the flow.
    Wrong,
    /// Wrong too often: the step gives up.
    GaveUp(Resume),
}

/// What [`begin`] needs to know.
pub struct Begin<'a> {
    /// The interrupted form.
    pub step: Resumable,
    /// What was posted (without the CSRF token).
    pub fields: &'a [(String, String)],
    /// The validated return URL.
    pub rd: &'a str,
    /// This captcha's round (1 or 2).
    pub round: u8,
    /// The call that asked.
    pub endpoint: &'static str,
    /// Redirect or image.
    pub mode: Mode,
    /// `<public_url>/__auth/captcha/callback`.
    pub callback: &'a str,
}

const STEP_AAD: &[u8] = b"cloudbase-gateway/pending-step/v1";

fn seal_fields(ctx: &Ctx<'_>, fields: &[(String, String)]) -> Arc<Vec<u8>> {
    let json = serde_json::to_vec(fields).unwrap_or_default();
    Arc::new(ctx.states.sealer().seal(STEP_AAD, &json))
}

fn open_fields(ctx: &Ctx<'_>, flow: &CaptchaFlow) -> Result<Vec<(String, String)>, FlowError> {
    // Signed in (or out) as someone else since: the step is not theirs to run.
    if flow.sub.as_deref() != ctx.current.map(|l| l.record.sub.as_str()) {
        return Err(FlowError::StartAgain);
    }
    ctx.states
        .sealer()
        .open(STEP_AAD, &flow.sealed)
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or(FlowError::StartAgain)
}

/// The SDK's name for a call in `captcha/data`: `POST:/v1/signin` for `/auth/v1/signin`.
fn call_name(endpoint: &str) -> String {
    format!(
        "POST:{}",
        endpoint.strip_prefix("/auth").unwrap_or(endpoint)
    )
}

/// Keeps the step and starts a captcha for it.
///
/// Fails with [`FlowError::RateLimited`] over the per-client captcha limit (CloudBase not
/// called), CloudBase's refusal of `captcha/init` or `captcha/data`, or
/// [`FlowError::Unavailable`].
pub async fn begin(ctx: &Ctx<'_>, b: Begin<'_>) -> Result<Challenge, FlowError> {
    ctx.limits.captcha(&ctx.client_ip).await?;
    let mut flow = CaptchaFlow {
        step: b.step,
        rd: b.rd.to_string(),
        round: b.round,
        endpoint: b.endpoint.to_string(),
        image: None,
        wrong: 0,
        sub: ctx.current.map(|l| l.record.sub.clone()),
        sealed: seal_fields(ctx, b.fields),
    };
    let call = ctx.call(&ctx.device_id());
    tracing::info!(step = ?b.step, endpoint = b.endpoint, round = b.round, "captcha needed");
    match b.mode {
        Mode::Redirect => {
            let id = ctx
                .flows
                .create(ctx.browser, Pending::Captcha(flow))
                .await?;
            let state = ctx
                .states
                .mint(StateKind::Captcha, &id, b.rd, "", ctx.browser);
            let answer = ctx.cloudbase.captcha_init(&call, b.callback, &state).await;
            match answer {
                Ok(a) => {
                    if let Some(token) = a.captcha_token {
                        ctx.flows.remove(&id).await;
                        return Ok(Challenge::Token(token, a.expires_in));
                    }
                    let page = a
                        .url
                        .as_deref()
                        .and_then(|u| super::provider::web_page(u, ctx.allow_http_pages));
                    match page {
                        Some(url) => Ok(Challenge::Redirect(url)),
                        None => {
                            ctx.flows.remove(&id).await;
                            tracing::warn!("captcha/init answered neither a token nor a page");
                            Err(FlowError::Unavailable)
                        }
                    }
                }
                Err(e) => {
                    ctx.flows.remove(&id).await;
                    Err(refused(&e, Step::Captcha))
                }
            }
        }
        Mode::Image => {
            flow.image = Some(picture(ctx, &call, b.endpoint).await?);
            let id = ctx
                .flows
                .create(ctx.browser, Pending::Captcha(flow))
                .await?;
            Ok(Challenge::Image(id))
        }
    }
}

async fn picture(
    ctx: &Ctx<'_>,
    call: &crate::cloudbase::client::CallContext,
    endpoint: &str,
) -> Result<Image, FlowError> {
    let img = ctx
        .cloudbase
        .captcha_data(call, &call_name(endpoint))
        .await
        .map_err(|e| refused(&e, Step::Captcha))?;
    if !img.data.starts_with("data:image/") {
        tracing::warn!("captcha/data answered no image");
        return Err(FlowError::Unavailable);
    }
    Ok(Image {
        data: img.data,
        token: img.token,
    })
}

/// Back from CloudBase's captcha page: checks and spends `state`, and gives the step back.
///
/// Fails with [`FlowError::BadState`] (reason logged).
pub async fn returned(ctx: &Ctx<'_>, state: &str) -> Result<Resume, FlowError> {
    let claims = ctx
        .states
        .open(state, &[StateKind::Captcha], Some(ctx.browser))
        .map_err(|e| super::bad_state(e.reason()))?;
    match ctx.flows.take(&claims.nonce, ctx.browser).await? {
        Some(Pending::Captcha(flow)) if flow.rd == claims.rd && flow.image.is_none() => {
            let fields = open_fields(ctx, &flow)?;
            Ok(Resume { flow, fields })
        }
        Some(_) => Err(super::bad_state("mismatch")),
        None => Err(super::bad_state("used")),
    }
}

/// The image-mode flow `id` of this browser (for its page).
///
/// Fails with [`FlowError::StartAgain`].
pub async fn pending_image(ctx: &Ctx<'_>, id: &str) -> Result<CaptchaFlow, FlowError> {
    match ctx.flows.get(id, ctx.browser).await? {
        Some(Pending::Captcha(f)) if f.image.is_some() => Ok(f),
        _ => Err(FlowError::StartAgain),
    }
}

/// Checks the characters read from flow `id`'s picture.
///
/// Fails with [`FlowError::StartAgain`] or [`FlowError::Unavailable`] (the flow is kept).
pub async fn solve(ctx: &Ctx<'_>, id: &str, answer: &str) -> Result<Solved, FlowError> {
    let Some(mut taken) = ctx.flows.take_for_step(id, ctx.browser).await? else {
        return Err(FlowError::StartAgain);
    };
    let Pending::Captcha(mut flow) = taken.value.clone() else {
        taken.put_back(ctx.flows).await;
        return Err(FlowError::StartAgain);
    };
    let Some(image) = flow.image.clone() else {
        taken.put_back(ctx.flows).await;
        return Err(FlowError::StartAgain);
    };
    let answer = answer.trim();
    let call = ctx.call(&ctx.device_id());
    let verdict = if answer.is_empty() || answer.chars().count() > 16 {
        Err(FlowError::Refused {
            status: 400,
            message: "err.captcha_wrong",
            retry_after: None,
        })
    } else {
        ctx.cloudbase
            .captcha_verify(&call, &image.token, answer)
            .await
            .map_err(|e| refused(&e, Step::CaptchaVerify))
    };
    match verdict {
        Ok(t) => {
            let fields = open_fields(ctx, &flow)?;
            Ok(Solved::Token(
                Resume { flow, fields },
                t.captcha_token,
                t.expires_in,
            ))
        }
        // A wrong reading (CloudBase may also call it an invalid captcha).
        Err(FlowError::Refused { status: 400, .. } | FlowError::Captcha { .. }) => {
            flow.wrong += 1;
            if flow.wrong >= MAX_WRONG {
                let fields = open_fields(ctx, &flow)?;
                return Ok(Solved::GaveUp(Resume { flow, fields }));
            }
            // A picture is good for one reading: show a new one.
            match picture(ctx, &call, &flow.endpoint).await {
                Ok(img) => flow.image = Some(img),
                Err(e) => {
                    taken.put_back(ctx.flows).await;
                    return Err(e);
                }
            }
            taken.value = Pending::Captcha(flow);
            taken.put_back(ctx.flows).await;
            Ok(Solved::Wrong)
        }
        Err(e) => {
            taken.put_back(ctx.flows).await;
            Err(e)
        }
    }
}

/// The person cancelled the picture: the step, to show its form again.
///
/// Fails with [`FlowError::StartAgain`].
pub async fn cancel(ctx: &Ctx<'_>, id: &str) -> Result<Resume, FlowError> {
    match ctx.flows.take(id, ctx.browser).await? {
        Some(Pending::Captcha(flow)) => {
            let fields = open_fields(ctx, &flow)?;
            Ok(Resume { flow, fields })
        }
        _ => Err(FlowError::StartAgain),
    }
}

/// Solved captcha tokens per browser, each until it expires less ten seconds (as the SDK keeps
/// them), by the injected clock. In memory, or in Redis (`Pc:<keyed hash of the browser>`,
/// the token sealed under a key derived from the browser's binding, the key name as
/// associated data).
pub struct TokenCache {
    backend: TokenBackend,
    clock: SharedClock,
}

enum TokenBackend {
    Memory(moka::future::Cache<[u8; 32], (Secret, u64)>),
    Redis {
        redis: Arc<crate::store::redis::Redis>,
        sealer: crate::store::RecordSealer,
    },
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CachedToken {
    #[serde(serialize_with = "crate::secret::expose")]
    t: Secret,
    u: u64,
}

const TOKEN_AAD: &str = "cloudbase-gateway/captcha-token/v1:";

impl TokenCache {
    /// A cache of at most `capacity` browsers, in memory.
    pub fn new(capacity: u64, clock: SharedClock) -> TokenCache {
        TokenCache {
            backend: TokenBackend::Memory(
                moka::future::Cache::builder()
                    .max_capacity(capacity)
                    // Real time only frees memory; the injected clock decides what is expired.
                    .time_to_live(Duration::from_secs(3600))
                    .build(),
            ),
            clock,
        }
    }

    /// A cache in Redis, each token sealed by `sealer` under a key derived from its browser's
    /// binding.
    pub fn redis(
        redis: Arc<crate::store::redis::Redis>,
        sealer: crate::store::RecordSealer,
        clock: SharedClock,
    ) -> TokenCache {
        TokenCache {
            backend: TokenBackend::Redis { redis, sealer },
            clock,
        }
    }

    /// The browser's token, while it is valid.
    ///
    /// Fails when the shared store fails.
    pub async fn get(&self, browser: Browser) -> Result<Option<Secret>, StoreError> {
        let now = self.clock.unix_secs();
        match &self.backend {
            TokenBackend::Memory(cache) => Ok(cache
                .get(browser.as_bytes())
                .await
                .filter(|(_, until)| now < *until)
                .map(|(t, _)| t)),
            TokenBackend::Redis { redis, sealer } => {
                let name = redis.key("c", browser.as_bytes());
                let raw: Option<Vec<u8>> = redis
                    .query("captcha_token_get", redis::cmd("GET").arg(&name))
                    .await?;
                Ok(raw
                    .and_then(|raw| {
                        sealer.open(
                            browser.as_bytes(),
                            format!("{TOKEN_AAD}{name}").as_bytes(),
                            &raw,
                        )
                    })
                    .and_then(|json| serde_json::from_slice::<CachedToken>(&json).ok())
                    .filter(|c| now < c.u)
                    .map(|c| c.t))
            }
        }
    }

    /// Keeps `token`, valid `expires_in` seconds, for the browser (best effort: a token that
    /// cannot be kept is asked for again next time).
    pub async fn put(&self, browser: Browser, token: Secret, expires_in: u64) {
        let life = expires_in.min(3600).saturating_sub(10);
        if life == 0 {
            return;
        }
        let until = self.clock.unix_secs() + life;
        match &self.backend {
            TokenBackend::Memory(cache) => cache.insert(*browser.as_bytes(), (token, until)).await,
            TokenBackend::Redis { redis, sealer } => {
                let name = redis.key("c", browser.as_bytes());
                let Ok(json) = serde_json::to_vec(&CachedToken { t: token, u: until }) else {
                    return;
                };
                let sealed = sealer.seal(
                    browser.as_bytes(),
                    format!("{TOKEN_AAD}{name}").as_bytes(),
                    &json,
                );
                let _: Result<(), _> = redis
                    .query(
                        "captcha_token_put",
                        redis::cmd("SET").arg(&name).arg(sealed).arg("EX").arg(life),
                    )
                    .await;
            }
        }
    }

    /// Forgets the browser's token (CloudBase refused it).
    pub async fn forget(&self, browser: Browser) {
        match &self.backend {
            TokenBackend::Memory(cache) => cache.invalidate(browser.as_bytes()).await,
            TokenBackend::Redis { redis, .. } => {
                let _: Result<i64, _> = redis
                    .query(
                        "captcha_token_forget",
                        redis::cmd("DEL").arg(redis.key("c", browser.as_bytes())),
                    )
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_named_as_the_sdk_names_them() {
        assert_eq!(call_name("/auth/v1/verification"), "POST:/v1/verification");
        assert_eq!(call_name("/auth/v1/signin"), "POST:/v1/signin");
    }
}
