//! Form posts that CloudBase may interrupt with a captcha, and the captcha's way back: the
//! callback of redirect mode (`GET /__auth/captcha/callback`) and the picture page of image
//! mode (`GET|POST /__auth/captcha`). [`run`] runs a step and, when CloudBase asks for a
//! captcha, tries the browser's cached token, then keeps the step and starts a captcha
//! ([`flows::captcha`]); the way back runs the step again with the token.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::body::Body;
use super::forms::{self, return_url, Form, Posted, View};
use super::pages::{self, CaptchaPage};
use super::{account, login, provider, Gateway, Worker, PREFIX};
use crate::error::GatewayError;
use crate::flows::captcha::{self as flow, Begin, Challenge, Resumable, Solved};
use crate::flows::FlowError;

/// Reads a form post (CSRF checked) and runs `step`.
pub async fn post(
    step: Resumable,
    gw: &Gateway,
    req: &HttpRequest,
    worker: &Worker,
    body: &[u8],
) -> HttpResponse {
    match Posted::read(gw, req, worker, body).await {
        Ok(p) => run(step, gw, req, worker, p, 0).await,
        Err(resp) => resp,
    }
}

async fn run_step(
    step: Resumable,
    gw: &Gateway,
    worker: &Worker,
    post: &Posted,
) -> Result<HttpResponse, FlowError> {
    match step {
        Resumable::Sudo | Resumable::Change => account::step(step, gw, worker, post).await,
        Resumable::Provider => provider::step(gw, worker, post).await,
        _ => login::step(step, gw, worker, post).await,
    }
}

/// The form of `step` again, with the message for `e` and what was typed (never a password).
pub async fn again(
    step: Resumable,
    gw: &Gateway,
    req: &HttpRequest,
    worker: &Worker,
    post: &Posted,
    e: &FlowError,
) -> HttpResponse {
    match step {
        Resumable::Sudo | Resumable::Change => account::again(step, gw, req, worker, post, e).await,
        Resumable::Provider if post.form.has("bind_sub") => {
            account::again(step, gw, req, worker, post, e).await
        }
        _ => login::again(step, gw, req, worker, post, e).await,
    }
}

/// The captcha rounds a step may take: a refused retry gets one fresh captcha, then gives up.
const ROUNDS: u8 = 2;

/// Runs `step` for `post` (round 0: the form post; 1 or 2: after that many captchas) and maps
/// the result: where the flow goes on, the form again with a message, or a captcha.
pub async fn run(
    step: Resumable,
    gw: &Gateway,
    req: &HttpRequest,
    worker: &Worker,
    mut post: Posted,
    mut round: u8,
) -> HttpResponse {
    let mut cached_tried = false;
    // A form post navigates (Fetch metadata, or an HTML Accept from older browsers); the
    // callbacks are navigations by the provider or captcha page.
    let navigating =
        req.method() == actix_web::http::Method::GET || super::is_navigation(req.headers());
    loop {
        let (fresh, endpoint) = match run_step(step, gw, worker, &post).await {
            Ok(resp) => return resp,
            // Only a browser navigating can be sent to a captcha (and only a navigation mints a
            // state); fetch() and API callers get the error.
            Err(FlowError::Captcha { fresh, endpoint }) if navigating => (fresh, endpoint),
            Err(e) => return again(step, gw, req, worker, &post, &e).await,
        };
        // As the SDK does: for `captcha_required`, a solved token still valid is tried first.
        if !fresh && !cached_tried && post.captcha.is_none() {
            cached_tried = true;
            if let Some(t) = gw.captcha_tokens.get(post.browser).await.ok().flatten() {
                post.captcha = Some(t);
                continue;
            }
        }
        gw.captcha_tokens.forget(post.browser).await;
        if round >= ROUNDS {
            tracing::info!(?step, "captcha refused again; giving up");
            let e = FlowError::Refused {
                status: 403,
                message: "err.captcha_failed",
                retry_after: None,
            };
            return again(step, gw, req, worker, &post, &e).await;
        }
        round += 1;
        let callback = format!(
            "{}{PREFIX}/captcha/callback",
            gw.config.public_url.as_str().trim_end_matches('/')
        );
        let fields = post.form.pairs();
        let rd = return_url(gw, &post.form);
        // The refused token goes nowhere else.
        post.captcha = None;
        let challenge = {
            let ctx = post.ctx(gw, worker);
            flow::begin(
                &ctx,
                Begin {
                    step,
                    fields: &fields,
                    rd: &rd,
                    round,
                    endpoint,
                    mode: gw.config.login.captcha_mode,
                    callback: &callback,
                },
            )
            .await
        };
        match challenge {
            Ok(Challenge::Token(token, expires_in)) => {
                gw.captcha_tokens
                    .put(post.browser, token.clone(), expires_in)
                    .await;
                post.captcha = Some(token);
            }
            Ok(Challenge::Redirect(url)) => return pages::redirect(&url).finish(),
            Ok(Challenge::Image(id)) => {
                return pages::redirect(&format!("{PREFIX}/captcha?flow={id}")).finish()
            }
            Err(e) => return again(step, gw, req, worker, &post, &e).await,
        }
    }
}

/// The step of `resume` as a post of this request's browser.
async fn resumed(
    gw: &Gateway,
    req: &HttpRequest,
    worker: &Worker,
    fields: Vec<(String, String)>,
) -> Posted {
    Posted::returning(gw, req, worker, Form::from_pairs(fields)).await
}

fn state_refused(inc: &super::Incoming) -> HttpResponse {
    pages::error_response(&GatewayError::StateInvalid, inc)
}

/// `GET /__auth/captcha/callback`: back from CloudBase's captcha page with `captcha_token` and
/// `expires_in`, or `error` and `error_description`, and our `state`.
pub async fn callback(
    req: HttpRequest,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let q = Form::query(&req);
    let probe = Posted::returning(&gw, &req, &worker, Form::default()).await;
    let resume = match flow::returned(&probe.ctx(&gw, &worker), q.get("state")).await {
        Ok(r) => r,
        Err(FlowError::BadState) => return state_refused(&probe.inc),
        Err(e) => return forms::error_response(&probe.inc, &e, None),
    };
    let step = resume.flow.step;
    let round = resume.flow.round;
    let mut post = resumed(&gw, &req, &worker, resume.fields).await;
    let token = q.get("captcha_token");
    if q.has("error") || token.is_empty() || token.len() > 4096 {
        tracing::info!(?step, error = %short_code(q.get("error")), "captcha not solved");
        let e = FlowError::Refused {
            status: 400,
            message: "err.captcha_cancelled",
            retry_after: None,
        };
        return again(step, &gw, &req, &worker, &post, &e).await;
    }
    let token = crate::secret::Secret::new(token);
    let expires_in = q.get("expires_in").parse().unwrap_or(0);
    gw.captcha_tokens
        .put(post.browser, token.clone(), expires_in)
        .await;
    post.captcha = Some(token);
    run(step, &gw, &req, &worker, post, round).await
}

/// An error code from a query, for the log: letters, digits and `_` only, at most 40.
pub fn short_code(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect()
}

fn image_page(gw: &Gateway, req: &HttpRequest, id: &str, data: &str, error: &str) -> HttpResponse {
    let mut view = View::new(gw, req, &format!("{PREFIX}/captcha?flow={id}"));
    let page = CaptchaPage {
        p: view.take(),
        flow: id,
        image: data,
        error,
    };
    view.respond(StatusCode::OK, &page)
}

/// `GET /__auth/captcha?flow=ID`: the picture to read (image mode).
pub async fn image(
    req: HttpRequest,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let page = Posted::page(&gw, &req, None);
    let q = &page.form;
    match flow::pending_image(&page.ctx(&gw, &worker), q.get("flow")).await {
        Ok(f) => {
            let data = f.image.map(|i| i.data).unwrap_or_default();
            image_page(&gw, &req, q.get("flow"), &data, "")
        }
        Err(_) => pages::error_response(&GatewayError::FlowExpired, &page.inc),
    }
}

/// `POST /__auth/captcha`: the characters read (`answer`), or `cancel`.
pub async fn answer(
    req: HttpRequest,
    body: Body,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let probe = match Posted::read(&gw, &req, &worker, &body).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let id = probe.form.get("flow").to_string();
    let ctx = probe.ctx(&gw, &worker);
    if probe.form.has("cancel") {
        return match flow::cancel(&ctx, &id).await {
            Ok(r) => {
                let post = resumed(&gw, &req, &worker, r.fields).await;
                let e = FlowError::Refused {
                    status: 400,
                    message: "err.captcha_cancelled",
                    retry_after: None,
                };
                again(r.flow.step, &gw, &req, &worker, &post, &e).await
            }
            Err(e) => forms::error_response(&probe.inc, &e, None),
        };
    }
    match flow::solve(&ctx, &id, probe.form.get("answer")).await {
        Ok(Solved::Token(r, token, expires_in)) => {
            let mut post = resumed(&gw, &req, &worker, r.fields).await;
            gw.captcha_tokens
                .put(post.browser, token.clone(), expires_in)
                .await;
            post.captcha = Some(token);
            run(r.flow.step, &gw, &req, &worker, post, r.flow.round).await
        }
        Ok(Solved::Wrong) => match flow::pending_image(&ctx, &id).await {
            Ok(f) => {
                let message = forms::message(&gw, &req, &FlowError::Input("err.captcha_wrong"));
                let data = f.image.map(|i| i.data).unwrap_or_default();
                let mut resp = image_page(&gw, &req, &id, &data, &message);
                *resp.status_mut() = StatusCode::BAD_REQUEST;
                resp
            }
            Err(e) => forms::error_response(&probe.inc, &e, None),
        },
        Ok(Solved::GaveUp(r)) => {
            let post = resumed(&gw, &req, &worker, r.fields).await;
            let e = FlowError::Refused {
                status: 403,
                message: "err.captcha_failed",
                retry_after: None,
            };
            again(r.flow.step, &gw, &req, &worker, &post, &e).await
        }
        Err(e) => forms::error_response(&probe.inc, &e, None),
    }
}
