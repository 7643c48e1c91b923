//! The sign-in flows, one module each: [`password`], [`code`] (e-mail and SMS codes, sign-up,
//! forgotten passwords), [`anonymous`], [`ticket`], [`provider`] (third-party redirects),
//! [`account`] (changes by a signed-in user) and [`captcha`] (what happens when CloudBase asks
//! for one). Flows take no HTTP framework types: the web layer hands them a [`Ctx`] and the
//! user's input and maps the [`Outcome`] or [`FlowError`] to a page, a redirect or JSON.
//!
//! Multi-step state lives in the flow store under an id the gateway mints ([`Pending`]); a
//! flow's messages for people are text keys of [`crate::i18n`].

pub mod account;
pub mod anonymous;
pub mod captcha;
pub mod code;
pub mod names;
pub mod password;
pub mod provider;
pub mod ticket;

use crate::cloudbase::client::{CallContext, CloudBaseClient};
use crate::cloudbase::error::CloudBaseError;
use crate::cloudbase::types::{Contact, Credentials};
use crate::flow::state::States;
use crate::flow::store::{Browser, FlowStore};
use crate::i18n::Lang;
use crate::metrics::Metrics;
use crate::ratelimit::{RateLimits, Refusal};
use crate::secret::Secret;
use crate::session::manager::{snapshot, Loaded, SessionManager, Started};
pub use names::{parse_contact, parse_email, parse_phone};

/// What a flow needs from the gateway for one request.
pub struct Ctx<'a> {
    /// This worker's CloudBase client.
    pub cloudbase: &'a CloudBaseClient,
    /// Sessions.
    pub sessions: &'a SessionManager,
    /// Flows in progress.
    pub flows: &'a FlowStore<Pending>,
    /// Rate limits.
    pub limits: &'a RateLimits,
    /// Which sign-in names belong to one account.
    pub accounts: &'a crate::ratelimit::Accounts,
    /// Metrics.
    pub metrics: &'a Metrics,
    /// The browser (its CSRF cookie), which flow records are bound to.
    pub browser: Browser,
    /// The client's IP (from trusted proxies only), for rate limits.
    pub client_ip: String,
    /// The page language, passed to CloudBase as `Accept-Language`.
    pub lang: Lang,
    /// The browser's current session, fresh, if any.
    pub current: Option<&'a Loaded>,
    /// Whether new accounts may be created (`sign_up`).
    pub sign_up: bool,
    /// A captcha token to send with this step's calls (retrying after a captcha).
    pub captcha: Option<Secret>,
    /// Seals states and pending steps.
    pub states: &'a States,
    /// Solved captchas, per browser.
    pub captcha_tokens: &'a captcha::TokenCache,
    /// Whether CloudBase may send the browser to plain-http pages (`insecure_cookie`).
    pub allow_http_pages: bool,
}

impl Ctx<'_> {
    /// A call context for `device_id`.
    fn call(&self, device_id: &str) -> CallContext {
        CallContext {
            language: Some(self.lang.cloudbase_tag().to_string()),
            captcha_token: self.captcha.clone(),
            ..CallContext::new(device_id)
        }
    }

    /// The browser's device id: the current session's (the SDK keeps one per browser, and
    /// anonymous users are keyed by it), or a new one.
    fn device_id(&self) -> String {
        self.current
            .map(|l| l.record.device_id.clone())
            .unwrap_or_else(|| self.sessions.new_device_id())
    }

    /// The current session's access token when it is anonymous (for an upgrade that keeps the
    /// uid).
    fn anonymous_token(&self) -> Option<Secret> {
        self.current
            .filter(|l| l.record.is_anonymous())
            .map(|l| l.record.access_token.clone())
    }

    /// Starts a session for `creds`, ending the browser's previous one, and counts the sign-in.
    ///
    /// Fails with [`FlowError::Store`] when the session store fails.
    async fn finish(
        &self,
        creds: Credentials,
        device_id: &str,
        rd: String,
        method: &'static str,
    ) -> Result<Outcome, FlowError> {
        let call = self.call(device_id);
        // The profile fills the identity headers; a session without it still works (the uid
        // comes from the credentials), so a failure here does not fail the sign-in.
        let profile = match self.cloudbase.user_me(&call, &creds.access_token).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(
                    error = e.code(),
                    request_id = e.request_id(),
                    "user/me after sign-in failed"
                );
                Default::default()
            }
        };
        let user = snapshot(&profile, &creds.groups);
        use crate::ratelimit::NameKind;
        let known = [
            (NameKind::User, names::limit_key(&user.username)),
            (NameKind::Email, names::limit_key(&user.email)),
            (NameKind::Phone, names::limit_key(&user.phone)),
        ];
        self.accounts
            .learn(known.iter().map(|(k, n)| (*k, n.as_str())), &creds.sub)
            .await;
        let started = self
            .sessions
            .start(&creds, user, device_id)
            .await
            .map_err(|_| FlowError::Store)?;
        if let Some(old) = self.current {
            // A new handle at every sign-in; the old session goes, its token revoked. A guest
            // upgraded to an account (same uid) was already ended by CloudBase.
            let upgraded = old.record.sub == creds.sub && old.record.is_anonymous();
            if upgraded {
                let _ = self.sessions.store().delete(&old.key).await;
            } else {
                let _ = self.sessions.end(self.cloudbase, old).await;
            }
        }
        self.metrics.sign_in(method);
        tracing::info!(method, sub = %creds.sub, "signed in");
        Ok(Outcome::SignedIn { started, rd })
    }
}

/// A flow in progress, kept in the flow store (serialised, then sealed, in a shared store).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Pending {
    /// A code was sent and waits to be entered.
    Code(CodeFlow),
    /// The user proved who they are (sudo) and may now make `change`.
    Elevated(Elevated),
    /// The browser went to a provider; its sealed `state` names this record.
    Provider(provider::ProviderFlow),
    /// A step waits for a captcha.
    Captcha(captcha::CaptchaFlow),
}

/// [`FlowError::BadState`], logging why (the state itself never is).
pub fn bad_state(reason: &'static str) -> FlowError {
    tracing::info!(reason, "state refused");
    FlowError::BadState
}

/// What a code is for.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Purpose {
    /// Sign in (or register, when the contact has no account yet).
    SignIn,
    /// Register, with a user name, password and name entered with the code.
    SignUp,
    /// Reset a forgotten password, entered with the code.
    Reset,
    /// Prove who the signed-in user `sub` is, before `change`.
    Sudo {
        /// The user.
        sub: String,
        /// What they want to change afterwards.
        change: Change,
        /// For [`Change::Link`]: the provider to link.
        provider: Option<String>,
    },
    /// Bind the contact to the signed-in user `sub`.
    Bind {
        /// The user.
        sub: String,
        /// From `user/sudo`.
        #[serde(serialize_with = "crate::secret::expose")]
        sudo_token: Secret,
    },
}

/// An account change that needs sudo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Change {
    /// Bind or change the e-mail address.
    Email,
    /// Bind or change the phone number.
    Phone,
    /// Set a password.
    Password,
    /// Link a third-party provider.
    Link,
}

impl Change {
    /// The name used in URLs and forms.
    pub fn name(self) -> &'static str {
        match self {
            Change::Email => "email",
            Change::Phone => "phone",
            Change::Password => "password",
            Change::Link => "link",
        }
    }

    /// The change named `s`.
    pub fn parse(s: &str) -> Option<Change> {
        match s {
            "email" => Some(Change::Email),
            "phone" => Some(Change::Phone),
            "password" => Some(Change::Password),
            "link" => Some(Change::Link),
            _ => None,
        }
    }
}

/// A code flow's record.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CodeFlow {
    /// What the code is for.
    pub purpose: Purpose,
    /// Where the code went.
    pub contact: Contact,
    /// CloudBase's id for the code.
    pub verification_id: String,
    /// Whether the contact belongs to a user (sign in rather than register).
    pub is_user: bool,
    /// The validated return URL.
    pub rd: String,
    /// The browser's device id for CloudBase.
    pub device_id: String,
    /// Set once the code was right, so a refused last step (a taken user name, say) can be
    /// retried without a new code.
    #[serde(serialize_with = "crate::secret::expose_opt")]
    pub verification_token: Option<Secret>,
}

/// An elevated (sudo) account change in progress.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Elevated {
    /// The user.
    pub sub: String,
    /// What they may change.
    pub change: Change,
    /// For [`Change::Link`]: the provider they may link.
    pub provider: Option<String>,
    /// From `user/sudo`.
    #[serde(serialize_with = "crate::secret::expose")]
    pub sudo_token: Secret,
}

/// Where a flow ended up.
#[derive(Debug)]
pub enum Outcome {
    /// A session started: set its cookie and go to `rd`.
    SignedIn {
        /// The new session.
        started: Started,
        /// The validated return URL.
        rd: String,
    },
    /// Nothing new: go to `rd` (e.g. a guest button pressed by someone already signed in).
    Continue {
        /// The validated return URL.
        rd: String,
    },
    /// A code was sent: show the code page of flow `flow`.
    CodeSent {
        /// The flow id.
        flow: String,
    },
    /// Sudo succeeded: show the change page of flow `flow`.
    Elevated {
        /// The flow id.
        flow: String,
    },
    /// An account change is done: back to the account page with this notice (a text key).
    AccountUpdated {
        /// Text key of the notice.
        notice: &'static str,
    },
}

/// Why a flow step did not go on. Messages are text keys of [`crate::i18n`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowError {
    /// What the person entered cannot be used (400): show the form again with this message.
    Input(&'static str),
    /// CloudBase refused: show the form again with this message and status.
    Refused {
        /// HTTP status to answer with.
        status: u16,
        /// Text key.
        message: &'static str,
        /// Seconds to wait, when CloudBase said.
        retry_after: Option<u64>,
    },
    /// The gateway's own rate limit (429 with Retry-After); CloudBase was not called.
    RateLimited {
        /// Seconds to wait.
        retry_after: u64,
        /// Text key (with `{wait}`).
        message: &'static str,
    },
    /// The flow id is missing, unknown, expired, used or another browser's.
    StartAgain,
    /// A redirect flow's `state` is missing, altered, expired, used, of another kind or
    /// another browser's.
    BadState,
    /// The step needs a signed-in user and there is none (or it just ended).
    SignInNeeded,
    /// CloudBase cannot be reached.
    Unavailable,
    /// The session store failed.
    Store,
    /// The step changes how the account signs in, and the session is not fresh enough: the
    /// user confirms who they are first (sudo).
    SudoNeeded,
    /// CloudBase asks for a captcha before it goes on (`captcha_required`, or
    /// `captcha_invalid` when `fresh`: a cached token must not be tried again).
    Captcha {
        /// A new captcha is needed (the token sent was refused).
        fresh: bool,
        /// The call that asked, e.g. `/auth/v1/signin`.
        endpoint: &'static str,
    },
}

impl FlowError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            FlowError::Input(_) | FlowError::StartAgain | FlowError::BadState => 400,
            FlowError::Refused { status, .. } => *status,
            FlowError::RateLimited { .. } => 429,
            FlowError::SignInNeeded => 401,
            FlowError::Captcha { .. } | FlowError::SudoNeeded => 403,
            FlowError::Unavailable | FlowError::Store => 503,
        }
    }

    /// Seconds to wait, for `Retry-After`.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            FlowError::Refused { retry_after, .. } => *retry_after,
            FlowError::RateLimited { retry_after, .. } => Some(*retry_after),
            FlowError::Unavailable | FlowError::Store => Some(10),
            _ => None,
        }
    }

    /// The message's text key.
    pub fn message(&self) -> &'static str {
        match self {
            FlowError::Input(m) => m,
            FlowError::Refused { message, .. } | FlowError::RateLimited { message, .. } => message,
            FlowError::StartAgain => "gwerr.flow_expired.desc",
            FlowError::BadState => "gwerr.state_invalid.desc",
            FlowError::SignInNeeded => "err.session_expired",
            FlowError::Captcha { .. } => "err.captcha",
            FlowError::SudoNeeded => "err.sudo_needed",
            FlowError::Unavailable | FlowError::Store => "err.unavailable",
        }
    }

    /// A stable machine-readable code for JSON callers (the text key without its group).
    pub fn code(&self) -> &'static str {
        match self {
            FlowError::StartAgain => "flow_expired",
            FlowError::BadState => "state_invalid",
            FlowError::SignInNeeded => "unauthenticated",
            FlowError::RateLimited { .. } => "rate_limited",
            FlowError::Store => "store_unavailable",
            FlowError::Unavailable => "cloudbase_unavailable",
            FlowError::Captcha { .. } => "captcha_required",
            other => {
                let m = other.message();
                m.strip_prefix("err.").unwrap_or(m)
            }
        }
    }
}

impl From<crate::store::StoreError> for FlowError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::warn!(error = %e, "flow store unavailable");
        FlowError::Store
    }
}

impl From<crate::ratelimit::LimitError> for FlowError {
    fn from(e: crate::ratelimit::LimitError) -> Self {
        match e {
            crate::ratelimit::LimitError::Refused(r) => r.into(),
            crate::ratelimit::LimitError::Store(e) => e.into(),
        }
    }
}

impl From<Refusal> for FlowError {
    fn from(r: Refusal) -> Self {
        tracing::info!(limit = r.limit, retry_after = r.retry_after, "rate limited");
        let message = if r.limit == "code_target" {
            "err.code_cooldown"
        } else {
            "err.rate_limited"
        };
        FlowError::RateLimited {
            retry_after: r.retry_after,
            message,
        }
    }
}

/// The CloudBase call a refusal came from; the same error name means different things to a
/// person at different steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `signin` with a password.
    Password,
    /// `verification` (sending a code).
    SendCode,
    /// `verification/verify`.
    Verify,
    /// `signin` with a verification token.
    CodeSignIn,
    /// `signup`.
    SignUp,
    /// `reset`.
    Reset,
    /// `user/sudo`.
    Sudo,
    /// `user/contact`.
    Contact,
    /// `user/password`.
    SetPassword,
    /// `signin/custom`.
    Ticket,
    /// `signin/anonymously`.
    Anonymous,
    /// `DELETE user/provider/{id}`.
    Unlink,
    /// `provider/uri`.
    ProviderUri,
    /// `provider/token`.
    ProviderToken,
    /// `signin/with/provider`.
    ProviderSignIn,
    /// `user/provider/bind`.
    Bind,
    /// `captcha/init`, `captcha/data`.
    Captcha,
    /// `captcha/data/verify`.
    CaptchaVerify,
}

/// What a CloudBase refusal at `step` means for the person, logged once here (error name and
/// request id only, never the description).
pub fn refused(e: &CloudBaseError, step: Step) -> FlowError {
    tracing::info!(
        ?step,
        error = e.code(),
        request_id = e.request_id(),
        "CloudBase refused"
    );
    if e.is_unavailable() {
        return FlowError::Unavailable;
    }
    let description = e
        .api()
        .map(|a| a.error_description.to_ascii_lowercase())
        .unwrap_or_default();
    let r = |status: u16, message: &'static str| FlowError::Refused {
        status,
        message,
        retry_after: None,
    };
    match (e.code().unwrap_or_default(), step) {
        ("captcha_required" | "captcha_invalid", _) => FlowError::Captcha {
            fresh: e.is("captcha_invalid"),
            endpoint: e.endpoint(),
        },
        ("resource_exhausted" | "invalid_status", _) => {
            let retry_after = e.api().and_then(|a| a.retry_after);
            FlowError::Refused {
                status: 429,
                message: if retry_after.is_some() {
                    "err.too_many_wait"
                } else {
                    "err.too_many"
                },
                retry_after,
            }
        }
        ("aborted", _) => r(429, "err.code_attempts"),
        ("user_blocked", _) => r(403, "err.blocked"),
        ("user_pending", _) => r(403, "err.pending"),
        ("password_not_set", Step::Sudo) => r(400, "err.no_password_sudo"),
        ("password_not_set", _) => r(401, "err.password_not_set"),
        ("invalid_password" | "wrong_password" | "invalid_username_or_password", _) => {
            r(401, "err.wrong_password")
        }
        ("not_found" | "user_not_found", Step::Password | Step::SendCode | Step::CodeSignIn) => {
            r(401, "err.no_user")
        }
        ("not_found", Step::Unlink) => r(404, "err.not_linked"),
        ("not_found" | "invalid_argument", Step::ProviderUri) => r(400, "err.unknown_provider"),
        ("not_found" | "user_not_found", Step::ProviderSignIn) => r(403, "err.provider_no_user"),
        (
            "invalid_argument" | "failed_precondition" | "provider_error" | "permission_denied",
            Step::ProviderToken | Step::ProviderSignIn,
        ) => r(502, "err.provider_failed"),
        ("failed_precondition" | "already_exists", Step::Bind) => r(409, "err.provider_taken"),
        ("invalid_argument", Step::Bind) => r(502, "err.provider_failed"),
        ("invalid_argument", Step::CaptchaVerify) => r(400, "err.captcha_wrong"),
        (_, Step::Captcha) => r(502, "err.captcha_failed"),
        ("not_found", Step::Verify) => r(400, "err.code_wrong"),
        (
            "unimplemented"
            | "login_type_disabled"
            | "login_method_disabled"
            | "provider_not_enabled",
            _,
        ) => r(403, "err.method_disabled"),
        ("failed_precondition", Step::SendCode) => r(409, "err.already_registered"),
        ("failed_precondition", Step::SignUp) if description.contains("username") => {
            r(409, "err.username_taken")
        }
        ("failed_precondition", Step::SignUp) if description.contains("not enabled") => {
            r(403, "err.signup_disabled")
        }
        ("failed_precondition", Step::SignUp) => r(409, "err.already_registered"),
        ("failed_precondition", Step::Contact) => r(409, "err.contact_taken"),
        ("invalid_argument" | "permission_denied" | "unauthenticated", Step::Ticket) => {
            r(401, "err.ticket")
        }
        ("invalid_argument" | "invalid_verification_code", Step::Verify) => {
            r(400, "err.code_wrong")
        }
        (
            "invalid_argument",
            Step::CodeSignIn | Step::SignUp | Step::Reset | Step::Contact | Step::Sudo,
        ) if description.contains("verification") => r(400, "err.code_wrong"),
        ("invalid_argument", Step::SignUp | Step::Reset | Step::SetPassword)
            if description.contains("password") =>
        {
            r(400, "err.password_rules")
        }
        ("invalid_argument", Step::SignUp) if description.contains("username") => {
            r(400, "err.username_rules")
        }
        ("invalid_argument", Step::SendCode) => r(400, "err.enter_contact"),
        ("invalid_argument", _) => r(400, "err.invalid_input"),
        ("unauthenticated", _) => FlowError::SignInNeeded,
        // An expired or foreign sudo token: the change starts again.
        ("permission_denied", Step::Contact | Step::SetPassword) => FlowError::StartAgain,
        _ => r(502, "err.generic"),
    }
}

/// CloudBase's user-name rule (spec §5.1): 2–48 letters, digits or `-_.:+@`, starting with a
/// letter or digit.
pub fn valid_username(s: &str) -> bool {
    (2..=48).contains(&s.len())
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:+@".contains(c))
}

/// CloudBase's password length rule: 6 to 64 characters.
pub fn valid_password(s: &str) -> bool {
    (6..=64).contains(&s.chars().count()) && s.len() <= 256
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudbase::error::{ApiError, CloudBaseError};

    fn api(error: &str, description: &str) -> CloudBaseError {
        CloudBaseError::Api(Box::new(ApiError {
            error: error.into(),
            error_code: None,
            error_description: description.into(),
            status: 400,
            request_id: "r".into(),
            retry_after: None,
            endpoint: "/auth/v1/signin",
        }))
    }

    #[test]
    fn refusals_read_as_what_happened() {
        let m = |e: &str, d: &str, s: Step| refused(&api(e, d), s).message();
        assert_eq!(
            m("invalid_password", "", Step::Password),
            "err.wrong_password"
        );
        assert_eq!(m("not_found", "", Step::Password), "err.no_user");
        assert_eq!(
            m("password_not_set", "", Step::Password),
            "err.password_not_set"
        );
        assert_eq!(m("user_blocked", "", Step::Password), "err.blocked");
        assert_eq!(m("user_pending", "", Step::Password), "err.pending");
        assert_eq!(m("invalid_status", "", Step::Password), "err.too_many");
        assert_eq!(m("invalid_argument", "x", Step::Verify), "err.code_wrong");
        assert_eq!(m("aborted", "", Step::Verify), "err.code_attempts");
        assert_eq!(
            m("failed_precondition", "", Step::SendCode),
            "err.already_registered"
        );
        assert_eq!(
            m(
                "failed_precondition",
                "username already exists",
                Step::SignUp
            ),
            "err.username_taken"
        );
        assert_eq!(m("captcha_required", "", Step::SendCode), "err.captcha");
        assert_eq!(m("invalid_argument", "bad", Step::Ticket), "err.ticket");
        assert_eq!(
            refused(&api("unauthenticated", ""), Step::Contact),
            FlowError::SignInNeeded
        );
        let mut e = api("resource_exhausted", "");
        if let CloudBaseError::Api(a) = &mut e {
            a.retry_after = Some(30);
        }
        assert_eq!(refused(&e, Step::SendCode).retry_after(), Some(30));
        assert_eq!(refused(&e, Step::SendCode).message(), "err.too_many_wait");
    }

    #[test]
    fn user_names_and_passwords_follow_cloudbase_rules() {
        assert!(valid_username("alice.w") && !valid_username("_x") && !valid_username("李"));
        assert!(valid_password("123456") && !valid_password("12345"));
    }
}
