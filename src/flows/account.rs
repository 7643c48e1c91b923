//! Account changes by a signed-in user: the overview (profile and linked providers), sudo
//! (`user/sudo` with the password, or with a code sent to the user's own contact), then
//! binding or changing the e-mail or phone (`verification` → `verify` → `user/contact`),
//! setting a password (`user/password`), and unlinking a provider.
//!
//! The sudo token lives in the flow store bound to this browser and this user; the session's
//! user snapshot is refreshed after a change so the identity headers follow at once.

use super::{code, refused, Change, Ctx, Elevated, FlowError, Outcome, Pending, Purpose, Step};
use crate::cloudbase::types::{ProviderInfo, SudoProof, UserProfile};
use crate::secret::Secret;
use crate::session::manager::{snapshot, Loaded};

/// What the account page shows.
#[derive(Debug, Clone, Default)]
pub struct Overview {
    /// The profile from `user/me`.
    pub profile: UserProfile,
    /// The identity sources and whether each is linked; `None` when CloudBase could not list
    /// them.
    pub providers: Option<Vec<ProviderInfo>>,
}

fn signed_in<'a>(ctx: &'a Ctx<'_>) -> Result<&'a Loaded, FlowError> {
    ctx.current.ok_or(FlowError::SignInNeeded)
}

/// The signed-in user's profile and providers.
///
/// Fails with [`FlowError::SignInNeeded`] without a session (or when CloudBase says its token
/// is dead), or [`FlowError::Unavailable`].
pub async fn overview(ctx: &Ctx<'_>) -> Result<Overview, FlowError> {
    let user = signed_in(ctx)?;
    let call = ctx.call(&user.record.device_id);
    let profile = ctx
        .cloudbase
        .user_me(&call, &user.record.access_token)
        .await
        .map_err(|e| refused(&e, Step::Contact))?;
    let providers = if user.record.is_anonymous() {
        Some(Vec::new())
    } else {
        match ctx
            .cloudbase
            .list_providers(&call, &user.record.access_token)
            .await
        {
            Ok(list) => Some(list.data),
            Err(e) => {
                tracing::warn!(
                    error = e.code(),
                    request_id = e.request_id(),
                    "listing providers failed"
                );
                None
            }
        }
    };
    Ok(Overview { profile, providers })
}

/// Proves who the user is with their password, for `change`.
///
/// Fails with the wrong password (rate-limited like sign-in), no password set, or
/// [`FlowError::SignInNeeded`].
pub async fn sudo_with_password(
    ctx: &Ctx<'_>,
    change: Change,
    provider: Option<String>,
    password: Secret,
) -> Result<Outcome, FlowError> {
    let user = signed_in(ctx)?;
    if password.expose().is_empty() || password.expose().len() > 1024 {
        return Err(FlowError::Input("err.enter_password"));
    }
    let permits = ctx
        .limits
        .password(&format!("uid:{}", user.record.sub), &ctx.client_ip)
        .await?;
    let sudo = ctx
        .cloudbase
        .sudo(
            &ctx.call(&user.record.device_id),
            &user.record.access_token,
            &SudoProof::Password(password),
        )
        .await
        .map_err(|e| refused(&e, Step::Sudo))?;
    ctx.limits.refund(permits).await;
    if sudo.sudo_token.expose().is_empty() {
        // CloudBase's answer for a user without a password (spec §5.11).
        return Err(FlowError::Input("err.no_password_sudo"));
    }
    let flow = ctx
        .flows
        .create(
            ctx.browser,
            Pending::Elevated(Elevated {
                sub: user.record.sub.clone(),
                change,
                provider,
                sudo_token: sudo.sudo_token,
            }),
        )
        .await?;
    Ok(Outcome::Elevated { flow })
}

/// Sends a code to the user's own e-mail (or phone, when there is no e-mail) to prove who they
/// are, for `change`.
///
/// Fails like [`code::send`], or with [`FlowError::Input`] when the user has no contact.
pub async fn sudo_with_code(
    ctx: &Ctx<'_>,
    change: Change,
    provider: Option<String>,
) -> Result<Outcome, FlowError> {
    let user = signed_in(ctx)?;
    let u = &user.record.user;
    let contact = if !u.email.is_empty() {
        crate::cloudbase::types::Contact::Email(u.email.clone())
    } else if !u.phone.is_empty() {
        crate::cloudbase::types::Contact::PhoneNumber(u.phone.clone())
    } else {
        return Err(FlowError::Input("sudo.no_method"));
    };
    code::send(
        ctx,
        Purpose::Sudo {
            sub: user.record.sub.clone(),
            change,
            provider,
        },
        contact,
        format!("{}/account", crate::web::PREFIX),
    )
    .await
}

/// The elevated flow `id` of this browser and user.
///
/// Fails with [`FlowError::StartAgain`] or [`FlowError::SignInNeeded`].
pub async fn elevated(ctx: &Ctx<'_>, id: &str) -> Result<Elevated, FlowError> {
    let user = signed_in(ctx)?;
    match ctx.flows.get(id, ctx.browser).await? {
        Some(Pending::Elevated(e)) if e.sub == user.record.sub => Ok(e),
        _ => Err(FlowError::StartAgain),
    }
}

/// Sends a code to the new e-mail or phone; entering it binds the contact.
///
/// Fails with [`FlowError::Input`] for a malformed contact, or like [`code::send`].
pub async fn change_contact(ctx: &Ctx<'_>, id: &str, raw: &str) -> Result<Outcome, FlowError> {
    let (taken, e) = take_elevated(ctx, id).await?;
    let result = match code::contact_for(e.change, raw) {
        Ok(contact) => {
            code::send(
                ctx,
                Purpose::Bind {
                    sub: e.sub,
                    sudo_token: e.sudo_token,
                },
                contact,
                format!("{}/account", crate::web::PREFIX),
            )
            .await
        }
        Err(err) => Err(err),
    };
    if result.is_err() {
        taken.put_back(ctx.flows).await;
    }
    result
}

/// Takes the elevated flow `id` of this browser and user for one step (a concurrent
/// submission finds nothing); put it back if the step fails.
///
/// Fails with [`FlowError::SignInNeeded`] or [`FlowError::StartAgain`].
pub(super) async fn take_elevated(
    ctx: &Ctx<'_>,
    id: &str,
) -> Result<(crate::flow::store::Taken<Pending>, Elevated), FlowError> {
    let user = signed_in(ctx)?;
    let taken = ctx
        .flows
        .take_for_step(id, ctx.browser)
        .await?
        .ok_or(FlowError::StartAgain)?;
    match &taken.value {
        Pending::Elevated(e) if e.sub == user.record.sub => {
            let e = e.clone();
            Ok((taken, e))
        }
        _ => {
            taken.put_back(ctx.flows).await;
            Err(FlowError::StartAgain)
        }
    }
}

/// Sets a new password with the sudo token of flow `id`; with `sign_out_others`, every other
/// session of the user ends (whoever knew the old password is out).
///
/// Fails with [`FlowError::Input`] for a password that breaks the rules, CloudBase's refusal
/// ([`FlowError::StartAgain`] for an expired sudo token), or [`FlowError::Store`].
pub async fn set_password(
    ctx: &Ctx<'_>,
    id: &str,
    new_password: Secret,
    sign_out_others: bool,
) -> Result<Outcome, FlowError> {
    let (taken, e) = take_elevated(ctx, id).await?;
    if e.change != Change::Password {
        taken.put_back(ctx.flows).await;
        return Err(FlowError::StartAgain);
    }
    if !super::valid_password(new_password.expose()) {
        taken.put_back(ctx.flows).await;
        return Err(FlowError::Input("err.password_rules"));
    }
    let user = signed_in(ctx)?;
    if let Err(err) = ctx
        .cloudbase
        .set_password(
            &ctx.call(&user.record.device_id),
            &user.record.access_token,
            &new_password,
            &e.sudo_token,
        )
        .await
    {
        let err = refused(&err, Step::SetPassword);
        if err != FlowError::StartAgain {
            taken.put_back(ctx.flows).await;
        }
        return Err(err);
    }
    tracing::info!(sub = %user.record.sub, "password set");
    if sign_out_others {
        // The password is changed whatever happens next: a store failure here is told to the
        // user on the account page, not turned into an error page for a change that worked.
        let ended = ctx
            .sessions
            .end_all_of(ctx.cloudbase, &user.record.sub, Some(&user.key))
            .await;
        if ended.is_err() {
            tracing::warn!(sub = %user.record.sub, "ending the other sessions after a password change failed");
            return Ok(Outcome::AccountUpdated {
                notice: "account.done.password_partial",
            });
        }
    }
    Ok(Outcome::AccountUpdated {
        notice: "account.done.password",
    })
}

/// Unlinks the provider `provider_id` from the user.
///
/// Fails with `err.not_linked`, or [`FlowError::SignInNeeded`].
pub async fn unlink(ctx: &Ctx<'_>, provider_id: &str) -> Result<Outcome, FlowError> {
    let user = signed_in(ctx)?;
    if provider_id.is_empty()
        || provider_id.len() > 128
        || !provider_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(FlowError::Input("err.not_linked"));
    }
    // The last way in stays: without a password, an e-mail, a phone or another provider the
    // account could never be signed in to again.
    let call = ctx.call(&user.record.device_id);
    let token = &user.record.access_token;
    let profile = ctx
        .cloudbase
        .user_me(&call, token)
        .await
        .map_err(|e| refused(&e, Step::Unlink))?;
    let others = ctx
        .cloudbase
        .list_providers(&call, token)
        .await
        .map_err(|e| refused(&e, Step::Unlink))?
        .data
        .into_iter()
        .filter(|p| p.bind && p.id != provider_id)
        .count();
    if !profile.has_password
        && profile.email.is_empty()
        && profile.phone_number.is_empty()
        && others == 0
    {
        return Err(FlowError::Input("err.last_method"));
    }
    ctx.cloudbase
        .unbind_provider(
            &ctx.call(&user.record.device_id),
            &user.record.access_token,
            provider_id,
        )
        .await
        .map_err(|e| refused(&e, Step::Unlink))?;
    tracing::info!(sub = %user.record.sub, provider = provider_id, "provider unlinked");
    Ok(Outcome::AccountUpdated {
        notice: "account.done.unlinked",
    })
}

/// Re-reads the profile into the session, so the identity headers show a changed contact at
/// once. Best effort: the next sign-in refreshes it anyway.
pub async fn refresh_profile(ctx: &Ctx<'_>, user: &Loaded) {
    let call = ctx.call(&user.record.device_id);
    match ctx
        .cloudbase
        .user_me(&call, &user.record.access_token)
        .await
    {
        Ok(profile) => {
            let groups = user.record.user.groups.clone();
            let mut snap = snapshot(&profile, &[]);
            if snap.groups.is_empty() {
                snap.groups = groups;
            }
            let _ = ctx.sessions.update_user(user, snap).await;
        }
        Err(e) => {
            tracing::warn!(
                error = e.code(),
                request_id = e.request_id(),
                "user/me after a change failed"
            );
        }
    }
}
