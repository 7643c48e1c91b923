//! Custom-login tickets: a ticket the developer's server signed (`<private_key_id>/@@/<JWT>`,
//! as the node SDK's `createTicket` makes it) → `signin/custom` → session. CloudBase checks
//! the signature, the environment and the expiry; the gateway only refuses what cannot be a
//! ticket before calling it.

use super::{refused, Ctx, FlowError, Outcome, Step};
use crate::secret::Secret;

/// Largest ticket accepted (a JWT signed with RSA-2048 is well under 2 KiB).
const MAX_TICKET: usize = 8 * 1024;

/// Signs in with a custom-login ticket.
///
/// Fails with [`FlowError::Input`] for something that is not a ticket,
/// [`FlowError::RateLimited`] after too many refused tickets from this client, or
/// [`FlowError::Refused`] (`err.ticket`) when CloudBase refuses it: forged, expired, used, or
/// for another environment.
pub async fn sign_in(ctx: &Ctx<'_>, ticket: Secret, rd: String) -> Result<Outcome, FlowError> {
    let t = ticket.expose().trim();
    let well_formed = t.len() <= MAX_TICKET
        && t.split_once("/@@/")
            .is_some_and(|(id, jwt)| !id.is_empty() && jwt.split('.').count() == 3)
        && !t.chars().any(|c| c.is_whitespace() || c.is_control());
    if !well_formed {
        tracing::info!("refused a value that is not a custom-login ticket");
        return Err(FlowError::Refused {
            status: 400,
            message: "err.ticket",
            retry_after: None,
        });
    }
    // Refused tickets are limited per client before CloudBase is called; one that signs in
    // gives its unit back, so a backend signing its users in is not slowed down.
    let permits = ctx.limits.ticket(&ctx.client_ip).await?;
    let device_id = ctx.device_id();
    let ticket = Secret::new(t);
    match ctx
        .cloudbase
        .signin_custom(&ctx.call(&device_id), &ticket)
        .await
    {
        Ok(creds) => {
            ctx.limits.refund(permits).await;
            ctx.finish(creds, &device_id, rd, "ticket").await
        }
        Err(e) => {
            if e.is_unavailable() {
                ctx.limits.refund(permits).await;
            }
            Err(refused(&e, Step::Ticket))
        }
    }
}
