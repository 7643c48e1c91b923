//! Password sign-in: user name, e-mail or phone (sent as `+86 138…`, as the SDK sends it) with
//! a password → `signin` → session. Attempts are rate-limited per account and per client IP
//! before CloudBase is called; a successful sign-in gives its attempt back.

use super::names::{limit_key, login_name};
use super::{refused, Ctx, FlowError, Outcome, Step};
use crate::cloudbase::types::SignInRequest;
use crate::secret::Secret;

/// Signs in with a password.
///
/// Fails with [`FlowError::Input`] for an empty or oversized field,
/// [`FlowError::RateLimited`] over a limit, or CloudBase's refusal (wrong password, no such
/// user, no password set, blocked, pending, locked after too many attempts).
pub async fn sign_in(
    ctx: &Ctx<'_>,
    username: &str,
    password: Secret,
    rd: String,
) -> Result<Outcome, FlowError> {
    let username = username.trim();
    if username.is_empty()
        || password.expose().is_empty()
        || username.len() > 256
        || password.expose().len() > 1024
    {
        return Err(FlowError::Input("err.enter_credentials"));
    }
    let login = login_name(username)?;
    let name = limit_key(&login);
    let permits = ctx
        .limits
        .password(&ctx.accounts.key(&name).await?, &ctx.client_ip)
        .await?;
    let device_id = ctx.device_id();
    let request = SignInRequest {
        username: login,
        password: Some(password),
        verification_token: None,
    };
    match ctx.cloudbase.signin(&ctx.call(&device_id), &request).await {
        Ok(creds) => {
            ctx.limits.refund(permits).await;
            ctx.finish(creds, &device_id, rd, "password").await
        }
        Err(e) => {
            if e.is_unavailable() || e.needs_captcha() {
                // CloudBase never judged the password: the attempt does not count.
                ctx.limits.refund(permits).await;
            }
            Err(refused(&e, Step::Password))
        }
    }
}
