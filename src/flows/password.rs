//! Password sign-in: user name, e-mail or phone (sent as `+86 138…`, as the SDK sends it) with
//! a password → `signin` → session. Attempts are rate-limited per user name and per client IP
//! before CloudBase is called; a successful sign-in gives its attempt back.

use super::{refused, Ctx, FlowError, Outcome, Step};
use crate::cloudbase::types::{format_phone, SignInRequest};
use crate::secret::Secret;

/// The login name CloudBase expects: a phone number becomes `+86 138…`, as the SDK sends it;
/// user names and e-mail addresses are sent as typed. A phone number is one with a `+`
/// country code, or a mainland mobile number (11 digits starting with 1), with any spaces or
/// dashes; other all-digit names are user names.
pub fn login_name(input: &str) -> String {
    let s = input.trim();
    let compact: String = s.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let digits = compact.strip_prefix('+').unwrap_or(&compact);
    let all_digits = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit());
    let international = compact.starts_with('+') && digits.len() >= 6;
    let mainland = digits.len() == 11 && digits.starts_with('1');
    if all_digits && (international || mainland) {
        format_phone(&compact)
    } else {
        s.to_string()
    }
}

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
    let login = login_name(username);
    let permits = ctx.limits.password(&login, &ctx.client_ip)?;
    let device_id = ctx.device_id();
    let request = SignInRequest {
        username: login,
        password: Some(password),
        verification_token: None,
    };
    match ctx.cloudbase.signin(&ctx.call(&device_id), &request).await {
        Ok(creds) => {
            ctx.limits.refund(permits);
            ctx.finish(creds, &device_id, rd, "password").await
        }
        Err(e) => {
            if e.is_unavailable() || e.needs_captcha() {
                // CloudBase never judged the password: the attempt does not count.
                ctx.limits.refund(permits);
            }
            Err(refused(&e, Step::Password))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_sent_in_the_sdk_form() {
        assert_eq!(login_name("13800000001"), "+86 13800000001");
        assert_eq!(login_name("+8613800000001"), "+86 13800000001");
        assert_eq!(login_name("138-0000-0001"), "+86 13800000001");
        assert_eq!(login_name(" alice "), "alice");
        assert_eq!(login_name("alice@example.com"), "alice@example.com");
        assert_eq!(login_name("12345"), "12345");
        assert_eq!(login_name("+86 138 0000 0001"), "+86 13800000001");
        assert_eq!(login_name("20231234"), "20231234", "an all-digit user name");
        assert_eq!(login_name("+1 555 123 4567"), "+15551234567");
    }
}
