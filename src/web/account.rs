//! The account pages of a signed-in user: the overview (`/__auth/account`), "confirm it's
//! you" (sudo), the new e-mail, phone or password, and unlinking a provider. Without a session
//! a navigation is sent to sign in and comes back here.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::body::Body;
use super::captcha;
use super::forms::{self, csrf_form, enc, Form, Posted, View};
use super::pages::{self, AccountPage, ChangePage, ProviderRow, SudoPage};
use super::{Gateway, Worker, PREFIX};
use crate::error::GatewayError;
use crate::flow::store::Browser;
use crate::flows::captcha::Resumable;
use crate::flows::{account, provider, Change, FlowError};
use crate::secret::Secret;
use crate::session::manager::Loaded;

/// The session, or the answer for a visitor without one: a redirect to sign in that comes back
/// to `back` (navigations), 401 JSON otherwise.
async fn signed_in(
    gw: &Gateway,
    req: &HttpRequest,
    worker: &Worker,
    back: &str,
) -> Result<Loaded, HttpResponse> {
    let inc = forms::incoming(gw, req);
    match gw.session(req, worker).await {
        Ok(super::SessionLookup {
            session: Some(l), ..
        }) => Ok(l),
        Ok(lookup) => {
            let mut resp = if inc.navigation {
                pages::redirect(&format!("{PREFIX}/?rd={}", enc(back))).finish()
            } else {
                pages::json_error(&GatewayError::Unauthenticated)
            };
            if let Some(c) = lookup.set_cookie {
                let _ = resp.add_cookie(&c);
            }
            Err(resp)
        }
        Err(e) => Err(pages::error_response(&e, &inc)),
    }
}

/// What every account form post starts with: the request's facts, the CSRF-checked form, the
/// browser, and the signed-in user (or the answer for a visitor without a session).
async fn account_post(
    gw: &Gateway,
    req: &HttpRequest,
    worker: &Worker,
    body: &[u8],
) -> Result<Posted, HttpResponse> {
    let inc = forms::incoming(gw, req);
    let (form, browser) =
        csrf_form(gw, req, body).map_err(|e| forms::refused_post(gw, req, &inc, &e, body))?;
    let user = signed_in(gw, req, worker, &format!("{PREFIX}/account")).await?;
    Ok(Posted {
        lang: gw.lang_of(req),
        inc,
        form,
        browser,
        current: Some(user),
        captcha: None,
    })
}

/// `GET /__auth/account`: the profile, linked providers and the ways to change them.
pub async fn account(
    req: HttpRequest,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let here = format!("{PREFIX}/account");
    let user = match signed_in(&gw, &req, &worker, &here).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    account_page(&gw, &req, &worker, &user, "", StatusCode::OK).await
}

async fn account_page(
    gw: &Gateway,
    req: &HttpRequest,
    worker: &Worker,
    user: &Loaded,
    error: &str,
    status: StatusCode,
) -> HttpResponse {
    let here = format!("{PREFIX}/account");
    let inc = forms::incoming(gw, req);
    let mut view = View::new(gw, req, &here);
    let (csrf, _) = forms::csrf_cookie(gw, req);
    let ctx = forms::ctx(
        gw,
        worker,
        &inc,
        Browser::from_csrf(&csrf),
        view.lang,
        Some(user),
    );
    let overview = match account::overview(&ctx).await {
        Ok(o) => o,
        Err(e) => {
            // Only the session's end or an outage stop the overview; any other refusal reads
            // as the service being unable to show the account now.
            let e = match e {
                FlowError::Refused { .. } | FlowError::Input(_) => FlowError::Unavailable,
                other => other,
            };
            return forms::error_response(&inc, &e, None);
        }
    };
    let q = Form::query(req);
    let notice = match q.get("done") {
        d @ ("email" | "phone" | "password" | "password_partial" | "unlinked" | "linked") => {
            view.t(&format!("account.done.{d}"))
        }
        _ => "",
    };
    let pr = &overview.profile;
    let providers_failed = overview.providers.is_none();
    let providers = overview
        .providers
        .unwrap_or_default()
        .into_iter()
        .map(|p| ProviderRow {
            name: view.provider_name(gw, &p.id, &p.name),
            linkable: !p.bind && gw.config.login.provider(&p.id).is_some(),
            id: p.id,
            user: p.provider_user_name,
            bound: p.bind,
        })
        .collect();
    let sign_up_url = format!("{PREFIX}/sign_up?rd={}", enc(&here));
    let page = AccountPage {
        p: view.take(),
        notice,
        error,
        guest: user.record.is_anonymous(),
        sign_up_url: &sign_up_url,
        uid: &user.record.sub,
        name: &pr.name,
        username: &pr.username,
        email: &pr.email,
        phone: &pr.phone_number,
        has_password: pr.has_password,
        providers,
        providers_failed,
    };
    view.respond(status, &page)
}

/// The change a form or query asks for, and for a link the provider (one of the configured
/// ones); `None` when it names neither.
fn target_of(gw: &Gateway, form: &Form) -> Option<(Change, Option<String>)> {
    match Change::parse(form.get("change"))? {
        Change::Link => {
            let id = form.get("provider");
            gw.config.login.provider(id)?;
            Some((Change::Link, Some(id.to_string())))
        }
        change => Some((change, None)),
    }
}

/// The address of the "confirm it's you" page for `change` (and its provider).
fn confirm_url(change: Change, provider: Option<&str>) -> String {
    match provider {
        Some(p) => format!(
            "{PREFIX}/account/confirm?change={}&provider={}",
            change.name(),
            enc(p)
        ),
        None => format!("{PREFIX}/account/confirm?change={}", change.name()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn sudo_page(
    gw: &Gateway,
    req: &HttpRequest,
    worker: &Worker,
    user: &Loaded,
    change: Change,
    provider: Option<&str>,
    error: &str,
    status: StatusCode,
) -> HttpResponse {
    let mut view = View::new(gw, req, &confirm_url(change, provider));
    let provider_name = provider
        .map(|p| view.provider_name(gw, p, ""))
        .unwrap_or_default();
    // Whether the password form shows depends on whether the user has one (from CloudBase).
    let inc = forms::incoming(gw, req);
    let ctx = forms::ctx(
        gw,
        worker,
        &inc,
        Browser::from_csrf(""),
        view.lang,
        Some(user),
    );
    let has_password = account::overview(&ctx)
        .await
        .map(|o| o.profile.has_password)
        .unwrap_or(true);
    let u = &user.record.user;
    let own = if !u.email.is_empty() {
        &u.email
    } else {
        &u.phone
    };
    let page = SudoPage {
        p: view.take(),
        change: change.name(),
        provider: provider.unwrap_or_default(),
        provider_name: &provider_name,
        has_password,
        own_contact: own,
        error,
    };
    view.respond(status, &page)
}

/// `GET /__auth/account/confirm?change=email|phone|password|link[&provider=ID]`: "confirm
/// it's you".
pub async fn confirm(
    req: HttpRequest,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let q = Form::query(&req);
    let Some((change, provider)) = target_of(&gw, &q) else {
        let mut inc = forms::incoming(&gw, &req);
        inc.navigation = true;
        return pages::error_response(&GatewayError::NotFound, &inc);
    };
    let back = confirm_url(change, provider.as_deref());
    let user = match signed_in(&gw, &req, &worker, &back).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    if user.record.is_anonymous() {
        return pages::redirect(&format!("{PREFIX}/account")).finish();
    }
    sudo_page(
        &gw,
        &req,
        &worker,
        &user,
        change,
        provider.as_deref(),
        "",
        StatusCode::OK,
    )
    .await
}

/// `POST /__auth/account/sudo`: proves who the user is with the password (`method=password`)
/// or sends a code to their own contact (`method=code`).
pub async fn sudo(
    req: HttpRequest,
    body: Body,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let post = match account_post(&gw, &req, &worker, &body).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    if target_of(&gw, &post.form).is_none() {
        return pages::error_response(
            &GatewayError::BadRequest("Unknown account change."),
            &post.inc,
        );
    }
    captcha::run(Resumable::Sudo, &gw, &req, &worker, post, 0).await
}

/// Runs the account step `step` (a form post, or its replay after a captcha).
///
/// Fails with the flow's error, for [`again`] to show.
pub(super) async fn step(
    step: Resumable,
    gw: &Gateway,
    worker: &Worker,
    post: &Posted,
) -> Result<HttpResponse, FlowError> {
    let ctx = post.ctx(gw, worker);
    let form = &post.form;
    let outcome = match step {
        Resumable::Sudo => {
            let (change, provider) = target_of(gw, form).ok_or(FlowError::StartAgain)?;
            if form.get("method") == "code" {
                account::sudo_with_code(&ctx, change, provider).await?
            } else {
                account::sudo_with_password(
                    &ctx,
                    change,
                    provider,
                    Secret::new(form.get("password")),
                )
                .await?
            }
        }
        _ => {
            let id = form.get("flow");
            let elevated = account::elevated(&ctx, id).await?;
            if elevated.change == Change::Password {
                account::set_password(
                    &ctx,
                    id,
                    Secret::new(form.get("new_password")),
                    form.get("sign_out_others") == "1",
                )
                .await?
            } else {
                account::change_contact(&ctx, id, form.get("contact")).await?
            }
        }
    };
    Ok(forms::outcome_response(gw, outcome))
}

/// The account form of `step` again, with the message for `e` and what was typed (never a
/// password).
pub(super) async fn again(
    step: Resumable,
    gw: &Gateway,
    req: &HttpRequest,
    worker: &Worker,
    post: &Posted,
    e: &FlowError,
) -> HttpResponse {
    let Some(user) = &post.current else {
        return forms::error_response(&post.inc, e, None);
    };
    let form = &post.form;
    let message = forms::message(gw, req, e);
    let page = match step {
        Resumable::Sudo => match target_of(gw, form) {
            Some((change, provider)) => {
                sudo_page(
                    gw,
                    req,
                    worker,
                    user,
                    change,
                    provider.as_deref(),
                    &message,
                    StatusCode::OK,
                )
                .await
            }
            None => return forms::error_response(&post.inc, e, None),
        },
        Resumable::Change => {
            let id = form.get("flow");
            match account::elevated(&post.ctx(gw, worker), id).await {
                Ok(el) => change_page(gw, req, id, el.change, form.get("contact").trim(), &message),
                Err(_) => return forms::error_response(&post.inc, e, None),
            }
        }
        _ => account_page(gw, req, worker, user, &message, StatusCode::OK).await,
    };
    forms::error_response(&post.inc, e, Some(page))
}

fn change_page(
    gw: &Gateway,
    req: &HttpRequest,
    flow: &str,
    change: Change,
    value: &str,
    error: &str,
) -> HttpResponse {
    let mut view = View::new(gw, req, &format!("{PREFIX}/account/change?flow={flow}"));
    let title = match change {
        Change::Email => "change.email",
        Change::Phone => "change.phone",
        Change::Password => "change.password",
        Change::Link => "sudo.title",
    };
    let page = ChangePage {
        p: view.take(),
        title,
        flow,
        change: change.name(),
        value,
        error,
    };
    view.respond(StatusCode::OK, &page)
}

/// `GET /__auth/account/change?flow=ID`: the new e-mail, phone or password, after sudo.
pub async fn change_form(
    req: HttpRequest,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let user = match signed_in(&gw, &req, &worker, &format!("{PREFIX}/account")).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let page = Posted::page(&gw, &req, Some(user));
    let q = &page.form;
    let ctx = page.ctx(&gw, &worker);
    match account::elevated(&ctx, q.get("flow")).await {
        // Confirmed for a link: on to the provider (the flow is spent).
        Ok(e) if e.change == Change::Link => {
            match provider::link_after_sudo(
                &ctx,
                q.get("flow"),
                &super::provider::callback_url(&gw),
            )
            .await
            {
                Ok(url) => pages::redirect(&url).finish(),
                Err(e) => {
                    let message = forms::message(&gw, &req, &e);
                    let user = page.current.as_ref().expect("signed in above");
                    let shown =
                        account_page(&gw, &req, &worker, user, &message, StatusCode::OK).await;
                    forms::error_response(&page.inc, &e, Some(shown))
                }
            }
        }
        Ok(e) => change_page(&gw, &req, q.get("flow"), e.change, "", ""),
        Err(_) => pages::error_response(&GatewayError::FlowExpired, &page.inc),
    }
}

/// `POST /__auth/account/change`: sends a code to the new contact, or sets the password.
pub async fn change(
    req: HttpRequest,
    body: Body,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let post = match account_post(&gw, &req, &worker, &body).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    captcha::run(Resumable::Change, &gw, &req, &worker, post, 0).await
}

/// `POST /__auth/account/unlink`: unlinks the provider `provider`.
pub async fn unlink(
    req: HttpRequest,
    body: Body,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let post = match account_post(&gw, &req, &worker, &body).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    match account::unlink(&post.ctx(&gw, &worker), post.form.get("provider")).await {
        Ok(o) => forms::outcome_response(&gw, o),
        // The account page with the message, as after a refused link.
        Err(e) => again(Resumable::Provider, &gw, &req, &worker, &post, &e).await,
    }
}
