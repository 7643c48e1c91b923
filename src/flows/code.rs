//! Code flows: a 6-digit code sent by e-mail or SMS (`verification`), entered on the code page
//! (`verification/verify`), then the step the code was for:
//!
//! - sign-in: `signin {username, verification_token}`, or `signup` when the contact has no
//!   account yet (as the SDK's `signInWithOtp` does);
//! - sign-up: `signup` with the user name, password and name entered with the code;
//! - forgotten password: `reset` with the new password entered with the code, then `signin`;
//! - account changes: `user/sudo` with the code, or `user/contact` to bind a new contact.
//!
//! A browser with an anonymous session that registers passes its access token as
//! `anonymous_token`, so CloudBase upgrades that user and the uid stays. Codes are
//! rate-limited per target and per client IP before CloudBase is called. The flow record keeps
//! the verification id and contact; passwords are never stored (they are entered with the
//! code and sent at once).

use super::names::limit_key;
use super::{
    refused, valid_password, valid_username, Change, CodeFlow, Ctx, Elevated, FlowError, Outcome,
    Pending, Purpose, Step,
};
use crate::cloudbase::types::{
    Contact, ContactUpdateRequest, ResetPasswordRequest, SignInRequest, SignUpRequest, SudoProof,
    VerificationRequest, VerificationTarget,
};
use crate::secret::Secret;

/// What the person typed on the code page.
#[derive(Default)]
pub struct CodeInput {
    /// The code.
    pub code: String,
    /// Sign-up: the user name (optional).
    pub username: String,
    /// Sign-up: the display name (optional).
    pub name: String,
    /// Sign-up: the password (optional); reset: the new password (required).
    pub password: Option<Secret>,
}

impl std::fmt::Debug for CodeInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeInput")
            .field("username", &self.username)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn target(purpose: &Purpose, sign_up: bool) -> (VerificationTarget, Option<&'static str>) {
    match purpose {
        // A code sign-in registers a new address, as the SDK's OTP sign-in does, unless
        // sign-up is off: then the address must have an account.
        Purpose::SignIn if sign_up => (VerificationTarget::Any, None),
        Purpose::SignIn => (VerificationTarget::User, None),
        Purpose::SignUp => (VerificationTarget::NotUser, None),
        // As S1's `resetPasswordForEmail` sends it.
        Purpose::Reset => (VerificationTarget::User, Some("recovery")),
        Purpose::Sudo { .. } => (VerificationTarget::CurUser, Some("reauthentication")),
        Purpose::Bind { .. } => (VerificationTarget::Any, None),
    }
}

/// The signed-in user for an account step, which must be `sub` when given.
fn account_user<'a>(
    ctx: &'a Ctx<'_>,
    sub: Option<&str>,
) -> Result<&'a crate::session::manager::Loaded, FlowError> {
    match ctx.current {
        Some(l) if sub.is_none_or(|s| s == l.record.sub) => Ok(l),
        Some(_) => Err(FlowError::StartAgain),
        None => Err(FlowError::SignInNeeded),
    }
}

/// Sends a code to `contact` for `purpose` and records the flow.
///
/// Fails with [`FlowError::RateLimited`] (CloudBase not called) or CloudBase's refusal (no
/// such user for a reset, already registered for a sign-up, too many codes).
pub async fn send(
    ctx: &Ctx<'_>,
    purpose: Purpose,
    contact: Contact,
    rd: String,
) -> Result<Outcome, FlowError> {
    let bearer = match &purpose {
        Purpose::Sudo { sub, .. } | Purpose::Bind { sub, .. } => {
            Some(account_user(ctx, Some(sub))?.record.access_token.clone())
        }
        _ => None,
    };
    let device_id = ctx.device_id();
    let (verification_id, is_user) =
        send_code(ctx, &purpose, &contact, bearer.as_ref(), &device_id).await?;
    let flow = CodeFlow {
        purpose,
        contact,
        verification_id,
        is_user,
        rd,
        device_id,
        verification_token: None,
    };
    let id = ctx.flows.create(ctx.browser, Pending::Code(flow)).await?;
    Ok(Outcome::CodeSent { flow: id })
}

async fn send_code(
    ctx: &Ctx<'_>,
    purpose: &Purpose,
    contact: &Contact,
    bearer: Option<&Secret>,
    device_id: &str,
) -> Result<(String, bool), FlowError> {
    let permits = ctx
        .limits
        .code(&limit_key(contact.value()), &ctx.client_ip)
        .await?;
    let (target, usage) = target(purpose, ctx.sign_up);
    let request = VerificationRequest {
        contact: contact.clone(),
        target,
        usage: usage.map(str::to_string),
    };
    match ctx
        .cloudbase
        .send_verification(&ctx.call(device_id), bearer, &request)
        .await
    {
        Ok(v) => {
            tracing::info!(channel = channel(contact), "code sent");
            Ok((v.verification_id, v.is_user))
        }
        Err(e) => {
            // CloudBase never answered, or wants a captcha first: the attempt does not count.
            // Any other answer does, so that probing which addresses have accounts costs as
            // much as sending codes.
            if e.is_unavailable() || e.needs_captcha() {
                ctx.limits.refund(permits).await;
            }
            Err(refused(&e, Step::SendCode))
        }
    }
}

fn channel(c: &Contact) -> &'static str {
    match c {
        Contact::Email(_) => "email",
        Contact::PhoneNumber(_) => "sms",
    }
}

/// The code flow `id` of this browser.
///
/// Fails with [`FlowError::StartAgain`] when it is unknown, expired, used or not a code flow.
pub async fn load(ctx: &Ctx<'_>, id: &str) -> Result<CodeFlow, FlowError> {
    match ctx.flows.get(id, ctx.browser).await? {
        Some(Pending::Code(f)) => Ok(f),
        _ => Err(FlowError::StartAgain),
    }
}

/// Sends a new code for the same flow (the previous one stops counting).
///
/// Fails like [`send`], or with [`FlowError::StartAgain`].
pub async fn resend(ctx: &Ctx<'_>, id: &str) -> Result<Outcome, FlowError> {
    let mut flow = load(ctx, id).await?;
    let bearer = match &flow.purpose {
        Purpose::Sudo { sub, .. } | Purpose::Bind { sub, .. } => {
            Some(account_user(ctx, Some(sub))?.record.access_token.clone())
        }
        _ => None,
    };
    let (verification_id, is_user) = send_code(
        ctx,
        &flow.purpose,
        &flow.contact,
        bearer.as_ref(),
        &flow.device_id,
    )
    .await?;
    flow.verification_id = verification_id;
    flow.is_user = is_user;
    flow.verification_token = None;
    // A new code lives ten minutes: so does the flow from now on.
    if !ctx
        .flows
        .update(id, ctx.browser, Pending::Code(flow), true)
        .await?
    {
        return Err(FlowError::StartAgain);
    }
    Ok(Outcome::CodeSent {
        flow: id.to_string(),
    })
}

/// Checks the code (unless an earlier submission already did) and completes the step the code
/// was for.
///
/// Fails with [`FlowError::Input`] (malformed code, missing or invalid password or user name),
/// CloudBase's refusal (wrong, expired or used code; too many attempts; already registered),
/// or [`FlowError::StartAgain`]. The flow survives a refusal, so the person can correct the
/// form or ask for a new code; it is gone once the step succeeds.
pub async fn submit(ctx: &Ctx<'_>, id: &str, input: CodeInput) -> Result<Outcome, FlowError> {
    // The flow is taken for the step: a double submission finds nothing and gets "start
    // again" instead of racing this one. A failed step puts it back.
    let mut taken = match ctx.flows.take_for_step(id, ctx.browser).await? {
        Some(t) => t,
        None => return Err(FlowError::StartAgain),
    };
    let Pending::Code(flow) = taken.value.clone() else {
        taken.put_back(ctx.flows).await;
        return Err(FlowError::StartAgain);
    };
    let result = step(ctx, flow, input).await;
    match result {
        Ok((outcome, _)) => Ok(outcome),
        Err((e, flow)) => {
            taken.value = Pending::Code(flow);
            taken.put_back(ctx.flows).await;
            Err(e)
        }
    }
}

/// One submission of the code page: the flow as it should be kept when the step fails.
async fn step(
    ctx: &Ctx<'_>,
    mut flow: CodeFlow,
    input: CodeInput,
) -> Result<(Outcome, ()), (FlowError, CodeFlow)> {
    // Check what can be checked here before spending the code.
    let precheck = match &flow.purpose {
        Purpose::SignUp => {
            let username = input.username.trim();
            if !username.is_empty() && !valid_username(username) {
                Err(FlowError::Input("err.username_rules"))
            } else {
                match &input.password {
                    Some(p) if !p.expose().is_empty() && !valid_password(p.expose()) => {
                        Err(FlowError::Input("err.password_rules"))
                    }
                    _ => Ok(()),
                }
            }
        }
        Purpose::Reset => match &input.password {
            Some(p) if valid_password(p.expose()) => Ok(()),
            Some(p) if !p.expose().is_empty() => Err(FlowError::Input("err.password_rules")),
            _ => Err(FlowError::Input("err.enter_password")),
        },
        Purpose::Sudo { sub, .. } | Purpose::Bind { sub, .. } => {
            account_user(ctx, Some(sub)).map(|_| ())
        }
        Purpose::SignIn => Ok(()),
    };
    if let Err(e) = precheck {
        return Err((e, flow));
    }
    let call = ctx.call(&flow.device_id);
    let token = match flow.verification_token.clone() {
        Some(t) => t,
        None => {
            let Some(code) = normalize_code(&input.code) else {
                return Err((FlowError::Input("err.enter_code"), flow));
            };
            match ctx
                .cloudbase
                .verify(&call, &flow.verification_id, &Secret::new(code))
                .await
            {
                Ok(v) => {
                    flow.verification_token = Some(v.verification_token.clone());
                    v.verification_token
                }
                Err(e) => return Err((refused(&e, Step::Verify), flow)),
            }
        }
    };
    match complete(ctx, &flow, token, input).await {
        Ok(o) => Ok((o, ())),
        Err(e) => {
            if matches!(
                e,
                FlowError::Refused {
                    message: "err.code_wrong",
                    ..
                }
            ) {
                // The verification token itself was refused (expired in the meantime): the
                // person enters a new code.
                flow.verification_token = None;
            }
            Err((e, flow))
        }
    }
}

/// The code as typed, without spaces or dashes, full-width digits read as digits; `None`
/// unless that leaves six digits.
fn normalize_code(raw: &str) -> Option<String> {
    let code: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c {
            '０'..='９' => char::from(b'0' + (c as u32 - '０' as u32) as u8),
            other => other,
        })
        .collect();
    (code.len() == 6 && code.chars().all(|c| c.is_ascii_digit())).then_some(code)
}

async fn complete(
    ctx: &Ctx<'_>,
    flow: &CodeFlow,
    token: Secret,
    input: CodeInput,
) -> Result<Outcome, FlowError> {
    let call = ctx.call(&flow.device_id);
    let rd = flow.rd.clone();
    let method = match flow.contact {
        Contact::Email(_) => "email_code",
        Contact::PhoneNumber(_) => "sms_code",
    };
    match &flow.purpose {
        Purpose::SignIn if flow.is_user => {
            let request = SignInRequest {
                username: flow.contact.value().to_string(),
                password: None,
                verification_token: Some(token),
            };
            let creds = ctx
                .cloudbase
                .signin(&call, &request)
                .await
                .map_err(|e| refused(&e, Step::CodeSignIn))?;
            ctx.finish(creds, &flow.device_id, rd, method).await
        }
        Purpose::SignIn if !ctx.sign_up => Err(FlowError::Refused {
            status: 403,
            message: "err.signup_disabled",
            retry_after: None,
        }),
        Purpose::SignIn => {
            let creds = ctx
                .cloudbase
                .signup(&call, &signup_request(ctx, flow, token, None, None, None))
                .await
                .map_err(|e| refused(&e, Step::SignUp))?;
            ctx.finish(creds, &flow.device_id, rd, "sign_up").await
        }
        Purpose::SignUp => {
            let some = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
            let password = input.password.filter(|p| !p.expose().is_empty());
            let request = signup_request(
                ctx,
                flow,
                token,
                some(&input.username),
                some(&input.name),
                password,
            );
            let creds = ctx
                .cloudbase
                .signup(&call, &request)
                .await
                .map_err(|e| refused(&e, Step::SignUp))?;
            ctx.finish(creds, &flow.device_id, rd, "sign_up").await
        }
        Purpose::Reset => {
            let password = input.password.expect("checked in submit");
            let request = ResetPasswordRequest {
                contact: flow.contact.clone(),
                new_password: password.clone(),
                verification_token: token,
            };
            ctx.cloudbase
                .reset_password(&call, &request)
                .await
                .map_err(|e| refused(&e, Step::Reset))?;
            tracing::info!("password reset");
            let request = SignInRequest {
                username: flow.contact.value().to_string(),
                password: Some(password),
                verification_token: None,
            };
            let creds = match ctx.cloudbase.signin(&call, &request).await {
                Ok(c) => c,
                Err(e) => {
                    // The password changed, but signing in with it failed (CloudBase went away
                    // between the calls): the account's sessions still end, when it is known.
                    let kind = match flow.contact {
                        Contact::Email(_) => crate::ratelimit::NameKind::Email,
                        Contact::PhoneNumber(_) => crate::ratelimit::NameKind::Phone,
                    };
                    let known = ctx
                        .accounts
                        .account_of(kind, &limit_key(flow.contact.value()))
                        .await?;
                    if let Some(sub) = known {
                        ctx.sessions
                            .end_all_of(ctx.cloudbase, &sub, None)
                            .await
                            .map_err(|_| FlowError::Store)?;
                    }
                    return Err(refused(&e, Step::Password));
                }
            };
            // Whoever knew the old password is signed out everywhere (a reset is what a user
            // does when someone else may be in the account), before the new session starts, so
            // a store failure here leaves no session half made. This browser's own old session
            // is ended by `finish`.
            let own = ctx.current.map(|l| &l.key);
            ctx.sessions
                .end_all_of(ctx.cloudbase, &creds.sub, own)
                .await
                .map_err(|_| FlowError::Store)?;
            ctx.finish(creds, &flow.device_id, rd, "reset").await
        }
        Purpose::Sudo {
            sub,
            change,
            provider,
        } => {
            let user = account_user(ctx, Some(sub))?;
            let sudo = ctx
                .cloudbase
                .sudo(
                    &call,
                    &user.record.access_token,
                    &SudoProof::VerificationToken(token),
                )
                .await
                .map_err(|e| refused(&e, Step::Sudo))?;
            if sudo.sudo_token.expose().is_empty() {
                return Err(FlowError::Refused {
                    status: 400,
                    message: "err.generic",
                    retry_after: None,
                });
            }
            let elevated = Elevated {
                sub: sub.clone(),
                change: *change,
                provider: provider.clone(),
                sudo_token: sudo.sudo_token,
            };
            let flow = ctx
                .flows
                .create(ctx.browser, Pending::Elevated(elevated))
                .await?;
            Ok(Outcome::Elevated { flow })
        }
        Purpose::Bind { sub, sudo_token } => {
            let user = account_user(ctx, Some(sub))?;
            let request = ContactUpdateRequest {
                contact: flow.contact.clone(),
                sudo_token: sudo_token.clone(),
                verification_token: token,
                conflict_resolution: None,
            };
            ctx.cloudbase
                .update_contact(&call, &user.record.access_token, &request)
                .await
                .map_err(|e| refused(&e, Step::Contact))?;
            super::account::refresh_profile(ctx, user).await;
            tracing::info!(sub = %sub, channel = channel(&flow.contact), "contact changed");
            Ok(Outcome::AccountUpdated {
                notice: match flow.contact {
                    Contact::Email(_) => "account.done.email",
                    Contact::PhoneNumber(_) => "account.done.phone",
                },
            })
        }
    }
}

fn signup_request(
    ctx: &Ctx<'_>,
    flow: &CodeFlow,
    token: Secret,
    username: Option<String>,
    name: Option<String>,
    password: Option<Secret>,
) -> SignUpRequest {
    let (email, phone_number) = match &flow.contact {
        Contact::Email(e) => (Some(e.clone()), None),
        Contact::PhoneNumber(p) => (None, Some(p.clone())),
    };
    SignUpRequest {
        email,
        phone_number,
        verification_token: Some(token),
        username,
        password,
        name,
        anonymous_token: ctx.anonymous_token(),
        ..SignUpRequest::default()
    }
}

/// The contact a change of kind `change` expects, parsed from what the person typed.
///
/// Fails with [`FlowError::Input`].
pub fn contact_for(change: Change, raw: &str) -> Result<Contact, FlowError> {
    match change {
        Change::Email => super::parse_email(raw),
        Change::Phone => super::parse_phone(raw),
        Change::Password | Change::Link => Err(FlowError::Input("err.invalid_input")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_read_as_typed() {
        assert_eq!(normalize_code(" 123 456 ").as_deref(), Some("123456"));
        assert_eq!(normalize_code("１２３４５６").as_deref(), Some("123456"));
        assert_eq!(normalize_code("123-456").as_deref(), Some("123456"));
        assert_eq!(normalize_code("12345"), None);
        assert_eq!(normalize_code("12a456"), None);
    }
}
