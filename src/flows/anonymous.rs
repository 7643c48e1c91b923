//! Anonymous (guest) sign-in: `signin/anonymously` with the browser's device id, so the same
//! browser keeps the same anonymous user. The upgrade to a registered account keeping the uid
//! is the code flow's `signup` with `anonymous_token` (see [`super::code`]).

use super::{refused, Ctx, FlowError, Outcome, Step};

/// Signs the browser in as a guest; a browser that already has a session just goes on.
///
/// Fails with CloudBase's refusal (`unimplemented` when anonymous sign-in is off).
pub async fn sign_in(ctx: &Ctx<'_>, rd: String) -> Result<Outcome, FlowError> {
    if ctx.current.is_some() {
        return Ok(Outcome::Continue { rd });
    }
    // Every guest is a CloudBase user and a session: limited per client IP.
    let permits = ctx.limits.anonymous(&ctx.client_ip).await?;
    let device_id = ctx.device_id();
    match ctx
        .cloudbase
        .signin_anonymously(&ctx.call(&device_id), false)
        .await
    {
        Ok(creds) => ctx.finish(creds, &device_id, rd, "anonymous").await,
        Err(e) => {
            ctx.limits.refund(permits).await;
            Err(refused(&e, Step::Anonymous))
        }
    }
}
