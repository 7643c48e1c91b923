//! Provider redirects: `GET /__auth/start?provider=ID&rd=…` (sign in; the login page's
//! buttons), `POST /__auth/start` (link to the signed-in account; the account page's buttons,
//! CSRF-protected) and `GET /__auth/callback` (the way back). Only configured providers are
//! offered, and only navigations mint a state.

use actix_web::{web, HttpRequest, HttpResponse};

use super::body::Body;
use super::captcha;
use super::forms::{self, return_url, Form, Posted};
use super::{pages, Gateway, Worker, PREFIX};
use crate::error::GatewayError;
use crate::flows::captcha::Resumable;
use crate::flows::{provider, FlowError};
use crate::secret::Secret;

/// Where providers send the browser back: `<public_url>/__auth/callback`.
pub(super) fn callback_url(gw: &Gateway) -> String {
    format!(
        "{}{PREFIX}/callback",
        gw.config.public_url.as_str().trim_end_matches('/')
    )
}

fn unknown_provider() -> FlowError {
    FlowError::Refused {
        status: 400,
        message: "err.unknown_provider",
        retry_after: None,
    }
}

/// Starts the redirect for `post` (provider, rd, bind) and answers it.
async fn begin(
    gw: &Gateway,
    req: &HttpRequest,
    worker: &Worker,
    post: Posted,
    bind: bool,
) -> HttpResponse {
    let id = post.form.get("provider");
    let result = if gw.config.login.provider(id).is_none() {
        Err(unknown_provider())
    } else {
        let rd = if bind {
            format!("{PREFIX}/account")
        } else {
            return_url(gw, &post.form)
        };
        provider::start(&post.ctx(gw, worker), id, bind, rd, &callback_url(gw)).await
    };
    match result {
        Ok(url) => pages::redirect(&url).finish(),
        // Linking from a session that signed in a while ago: confirm who you are first.
        Err(FlowError::SudoNeeded) if bind => pages::redirect(&format!(
            "{PREFIX}/account/confirm?change=link&provider={}",
            forms::enc(id)
        ))
        .finish(),
        // The page the button was on, with the message.
        Err(e) if bind => {
            super::account::again(Resumable::Provider, gw, req, worker, &post, &e).await
        }
        Err(e) => super::login::again(Resumable::Provider, gw, req, worker, &post, &e).await,
    }
}

/// `GET /__auth/start?provider=ID&rd=…`: sends a browser to the provider to sign in.
pub async fn start(
    req: HttpRequest,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let inc = gw.incoming(&req);
    if !inc.navigation {
        // A state is for a browser on its way to the provider, never for fetch() or a script.
        return pages::error_response(
            &GatewayError::BadRequest("Open this address in the browser to sign in."),
            &inc,
        );
    }
    let (csrf, new_cookie) = forms::csrf_cookie(&gw, &req);
    let post = Posted {
        current: forms::current_session(&gw, &req, &worker).await,
        lang: gw.lang_of(&req),
        browser: crate::flow::store::Browser::from_csrf(&csrf),
        form: Form::query(&req),
        inc: forms::incoming(&gw, &req),
        captcha: None,
    };
    let mut resp = begin(&gw, &req, &worker, post, false).await;
    // The callback is bound to this cookie: a first visit gets it with the redirect. (A page
    // shown instead sets its own.)
    if let Some(c) = new_cookie {
        if resp.status() == actix_web::http::StatusCode::FOUND {
            let _ = resp.add_cookie(&c);
        }
    }
    resp
}

/// `POST /__auth/start` (`provider`, `bind=1`): links a provider to the signed-in account.
pub async fn start_bind(
    req: HttpRequest,
    body: Body,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let post = match Posted::read(&gw, &req, &worker, &body).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    if !super::is_navigation(req.headers()) {
        // No state for fetch() or scripts.
        return pages::error_response(
            &GatewayError::BadRequest("Use the button on the account page."),
            &post.inc,
        );
    }
    let bind = post.form.get("bind") == "1";
    begin(&gw, &req, &worker, post, bind).await
}

/// `GET /__auth/callback`: back from the provider with `code` and our `state` (or `error`).
pub async fn callback(
    req: HttpRequest,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let q = Form::query(&req);
    let mut post = Posted::returning(&gw, &req, &worker, Form::default()).await;
    let flow = {
        let ctx = post.ctx(&gw, &worker);
        provider::arrive(&ctx, &gw.states, q.get("state")).await
    };
    let flow = match flow {
        Ok(f) => f,
        Err(FlowError::BadState) => {
            return pages::error_response(&GatewayError::StateInvalid, &post.inc)
        }
        Err(e) => return forms::error_response(&post.inc, &e, None),
    };
    // What the step needs, and what its page shows again on a refusal.
    let mut fields = vec![
        ("provider".to_string(), flow.provider_id.clone()),
        ("rd".to_string(), flow.rd.clone()),
        ("device_id".to_string(), flow.device_id.clone()),
    ];
    if let Some(sub) = &flow.bind_sub {
        fields.push(("bind_sub".to_string(), sub.clone()));
    }
    post.form = Form::from_pairs(fields.clone());
    if q.has("error") {
        tracing::info!(
            provider = %flow.provider_id,
            error = %captcha::short_code(q.get("error")),
            "provider refused or the user declined"
        );
        let e = FlowError::Refused {
            status: 400,
            message: "err.provider_denied",
            retry_after: None,
        };
        return captcha::again(Resumable::Provider, &gw, &req, &worker, &post, &e).await;
    }
    let token = {
        let ctx = post.ctx(&gw, &worker);
        provider::exchange(&ctx, &flow, Secret::new(q.get("code")), &callback_url(&gw)).await
    };
    match token {
        Ok(t) => {
            fields.push(("provider_token".to_string(), t.expose().to_string()));
            post.form = Form::from_pairs(fields);
            captcha::run(Resumable::Provider, &gw, &req, &worker, post, 0).await
        }
        Err(e) => captcha::again(Resumable::Provider, &gw, &req, &worker, &post, &e).await,
    }
}

/// Runs the provider step of `post`: sign in with (or link) its provider token.
///
/// Fails with the flow's error.
pub(super) async fn step(
    gw: &Gateway,
    worker: &Worker,
    post: &Posted,
) -> Result<HttpResponse, FlowError> {
    let form = &post.form;
    let bind_sub = form.has("bind_sub").then(|| form.get("bind_sub"));
    let outcome = provider::finish(
        &post.ctx(gw, worker),
        form.get("provider"),
        Secret::new(form.get("provider_token")),
        bind_sub,
        form.get("device_id"),
        return_url(gw, form),
    )
    .await?;
    Ok(forms::outcome_response(gw, outcome))
}
