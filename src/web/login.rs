//! The hosted login pages: the login page (`/__auth/`), the form posts of its methods, the
//! code page, sign-up, forgot password, the signed-out page and the pages' stylesheet. Each
//! handler reads its input, calls one flow and maps the outcome.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::body::Body;
use super::captcha;
use super::forms::{self, enc, return_url, Form, Posted, View};
use super::pages::{self, CodePage, ContactFormPage, LoginPage, SignedOutPage, Tab};
use super::{Gateway, Worker, PREFIX};
use crate::config::SignInMethod;
use crate::error::GatewayError;
use crate::flows::captcha::Resumable;
use crate::flows::{self, anonymous, code, password, FlowError, Purpose};
use crate::secret::Secret;

/// The page's method tabs, in the configured order.
fn tab_methods(gw: &Gateway) -> Vec<(&'static str, &'static str)> {
    gw.config
        .login
        .methods
        .iter()
        .filter_map(|m| match m {
            SignInMethod::Password => Some(("password", "login.tab.password")),
            SignInMethod::EmailCode => Some(("email", "login.tab.email")),
            SignInMethod::SmsCode => Some(("sms", "login.tab.sms")),
            _ => None,
        })
        .collect()
}

fn login_here(rd: &str, method: &str) -> String {
    format!("{PREFIX}/?method={method}&rd={}", enc(rd))
}

/// What the login form shows besides the layout.
#[derive(Default)]
struct LoginForm<'a> {
    method: &'a str,
    username: &'a str,
    email: &'a str,
    phone: &'a str,
    error: String,
}

/// Who the browser is signed in as, for the notices: a registered user's name, or a guest.
async fn who(gw: &Gateway, req: &HttpRequest) -> (String, bool) {
    let cookie = req.cookie(gw.sessions.cookies().session_name());
    match gw.sessions.load(cookie.as_ref().map(|c| c.value())).await {
        Ok(Some(l)) if l.record.is_anonymous() => (String::new(), true),
        Ok(Some(l)) => {
            let u = &l.record.user;
            let name = [&u.username, &u.email, &u.phone, &u.name]
                .into_iter()
                .find(|s| !s.is_empty())
                .cloned()
                .unwrap_or_else(|| l.record.sub.clone());
            (name, false)
        }
        _ => (String::new(), false),
    }
}

async fn login_page(
    gw: &Gateway,
    req: &HttpRequest,
    status: StatusCode,
    rd: &str,
    form: LoginForm<'_>,
) -> HttpResponse {
    let methods = tab_methods(gw);
    let active = methods
        .iter()
        .find(|(m, _)| *m == form.method)
        .or(methods.first())
        .map(|(m, _)| *m)
        .unwrap_or("");
    let mut view = View::new(gw, req, &login_here(rd, active));
    let (who, guest) = who(gw, req).await;
    let tabs = methods
        .iter()
        .map(|(m, label)| Tab {
            label,
            url: login_here(rd, m),
            active: *m == active,
        })
        .collect();
    let login = &gw.config.login;
    let sign_up_url = format!("{PREFIX}/sign_up?rd={}", enc(rd));
    let forgot_url = format!("{PREFIX}/forgot?rd={}", enc(rd));
    let has_code = login.has(SignInMethod::EmailCode) || login.has(SignInMethod::SmsCode);
    let providers = login
        .providers
        .iter()
        .map(|pr| pages::ProviderLink {
            label: view.provider_name(gw, &pr.id, ""),
            url: format!("{PREFIX}/start?provider={}&rd={}", enc(&pr.id), enc(rd)),
        })
        .collect();
    let page = LoginPage {
        providers,
        p: view.take(),
        rd,
        tabs,
        active,
        username: form.username,
        email: form.email,
        phone: form.phone,
        error: &form.error,
        who: &who,
        guest,
        anonymous: login.has(SignInMethod::Anonymous) && who.is_empty() && !guest,
        sign_up: login.sign_up,
        sign_up_url: &sign_up_url,
        forgot: has_code,
        forgot_url: &forgot_url,
    };
    view.respond(status, &page)
}

/// `GET /__auth/`: the login page. Takes `rd`, or the query of CloudBase's hosted login page
/// (`redirect_uri`, `env_id`, `client_id`, `config_version`, `app_id`) so that an app's
/// `auth.toDefaultLoginPage({redirect_uri})` lands here; `method` picks the tab.
pub async fn login(req: HttpRequest, gw: web::Data<Gateway>) -> HttpResponse {
    let q = Form::query(&req);
    let cb = &gw.config.cloudbase;
    let foreign = (q.has("env_id") && q.get("env_id") != cb.env_id)
        || (q.has("client_id") && q.get("client_id") != cb.client_id);
    if foreign {
        let mut inc = forms::incoming(&gw, &req);
        inc.navigation = true;
        return pages::error_response(&GatewayError::WrongEnvironment, &inc);
    }
    let rd = return_url(&gw, &q);
    let form = LoginForm {
        method: q.get("method"),
        ..LoginForm::default()
    };
    login_page(&gw, &req, StatusCode::OK, &rd, form).await
}

/// `POST /__auth/sign_in/password`.
pub async fn sign_in_password(
    req: HttpRequest,
    body: Body,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    captcha::post(Resumable::Password, &gw, &req, &worker, &body).await
}

/// `POST /__auth/sign_in/email`: sends a sign-in code by e-mail.
pub async fn sign_in_email(
    req: HttpRequest,
    body: Body,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    captcha::post(Resumable::EmailCode, &gw, &req, &worker, &body).await
}

/// `POST /__auth/sign_in/sms`: sends a sign-in code by SMS.
pub async fn sign_in_sms(
    req: HttpRequest,
    body: Body,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    captcha::post(Resumable::SmsCode, &gw, &req, &worker, &body).await
}

/// `POST /__auth/sign_in/anonymous`: signs the browser in as a guest.
pub async fn sign_in_anonymous(
    req: HttpRequest,
    body: Body,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    captcha::post(Resumable::Anonymous, &gw, &req, &worker, &body).await
}

fn method_disabled() -> FlowError {
    FlowError::Refused {
        status: 403,
        message: "err.method_disabled",
        retry_after: None,
    }
}

/// Runs the login-page step `step` (a form post, or its replay after a captcha).
///
/// Fails with the flow's error, for [`again`] to show.
pub(super) async fn step(
    step: Resumable,
    gw: &Gateway,
    worker: &Worker,
    post: &Posted,
) -> Result<HttpResponse, FlowError> {
    let form = &post.form;
    let rd = return_url(gw, form);
    let ctx = post.ctx(gw, worker);
    let login = &gw.config.login;
    let enabled = |m| {
        if login.has(m) {
            Ok(())
        } else {
            Err(method_disabled())
        }
    };
    let outcome = match step {
        Resumable::Password => {
            enabled(SignInMethod::Password)?;
            password::sign_in(
                &ctx,
                form.get("username"),
                Secret::new(form.get("password")),
                rd,
            )
            .await?
        }
        Resumable::Anonymous => {
            enabled(SignInMethod::Anonymous)?;
            anonymous::sign_in(&ctx, rd).await?
        }
        Resumable::EmailCode => {
            enabled(SignInMethod::EmailCode)?;
            let contact = flows::parse_email(form.get("email"))?;
            code::send(&ctx, Purpose::SignIn, contact, rd).await?
        }
        Resumable::SmsCode => {
            enabled(SignInMethod::SmsCode)?;
            let contact = flows::parse_phone(form.get("phone"))?;
            code::send(&ctx, Purpose::SignIn, contact, rd).await?
        }
        Resumable::SignUp | Resumable::Forgot => {
            let purpose = if step == Resumable::SignUp {
                Purpose::SignUp
            } else {
                Purpose::Reset
            };
            let contact = enabled_contact(gw)(form.get("contact"))?;
            code::send(&ctx, purpose, contact, rd).await?
        }
        Resumable::CodeSubmit => {
            let password = form.get("password");
            let input = code::CodeInput {
                code: form.get("code").to_string(),
                username: form.get("username").to_string(),
                name: form.get("name").to_string(),
                password: (!password.is_empty()).then(|| Secret::new(password)),
            };
            code::submit(&ctx, form.get("flow"), input).await?
        }
        Resumable::CodeResend => {
            let id = form.get("flow");
            code::resend(&ctx, id).await?;
            return Ok(pages::redirect(&format!("{PREFIX}/code?flow={id}&resent=1")).finish());
        }
        Resumable::Sudo | Resumable::Change | Resumable::Provider => {
            return Err(FlowError::StartAgain)
        }
    };
    Ok(forms::outcome_response(gw, outcome))
}

/// The form of the login-page step `step` again, with the message for `e` and what was typed
/// (never a password).
pub(super) async fn again(
    step: Resumable,
    gw: &Gateway,
    req: &HttpRequest,
    worker: &Worker,
    post: &Posted,
    e: &FlowError,
) -> HttpResponse {
    let form = &post.form;
    let rd = return_url(gw, form);
    let (which, field) = match step {
        Resumable::Password => {
            return again_login(gw, req, &post.inc, e, &rd, "password", form).await
        }
        Resumable::EmailCode => {
            return again_login(gw, req, &post.inc, e, &rd, "email", form).await
        }
        Resumable::SmsCode => return again_login(gw, req, &post.inc, e, &rd, "sms", form).await,
        Resumable::Anonymous | Resumable::Provider => {
            return again_login(gw, req, &post.inc, e, &rd, "", form).await
        }
        Resumable::CodeSubmit | Resumable::CodeResend => {
            return code_again(gw, req, post, &post.ctx(gw, worker), e).await
        }
        Resumable::SignUp => (AgainPage::SignUp, "contact"),
        Resumable::Forgot => (AgainPage::Forgot, "contact"),
        // Not this page's steps (see `web::captcha`).
        Resumable::Sudo | Resumable::Change => return forms::error_response(&post.inc, e, None),
    };
    let message = forms::message(gw, req, e);
    let page = contact_page(gw, req, which, &rd, form.get(field).trim(), &message).await;
    forms::error_response(&post.inc, e, Some(page))
}

/// Shows the login form again after `e`.
async fn again_login(
    gw: &Gateway,
    req: &HttpRequest,
    inc: &super::Incoming,
    e: &FlowError,
    rd: &str,
    method: &str,
    form: &Form,
) -> HttpResponse {
    let message = forms::message(gw, req, e);
    // The page is async (it looks up the session for its notices), so render it first and let
    // the error mapping decide whether it is used.
    let page = login_page(
        gw,
        req,
        StatusCode::OK,
        rd,
        LoginForm {
            method,
            username: form.get("username").trim(),
            email: form.get("email").trim(),
            phone: form.get("phone").trim(),
            error: message,
        },
    )
    .await;
    forms::error_response(inc, e, Some(page))
}

/// Which form a code-sending post came from.
#[derive(Clone, Copy)]
enum AgainPage {
    SignUp,
    Forgot,
}

fn sign_up_enabled(gw: &Gateway) -> bool {
    let l = &gw.config.login;
    l.sign_up && (l.has(SignInMethod::EmailCode) || l.has(SignInMethod::SmsCode))
}

fn forgot_enabled(gw: &Gateway) -> bool {
    let l = &gw.config.login;
    l.has(SignInMethod::EmailCode) || l.has(SignInMethod::SmsCode)
}

/// Parses a contact for a channel the configuration enables.
fn enabled_contact(
    gw: &Gateway,
) -> fn(&str) -> Result<crate::cloudbase::types::Contact, FlowError> {
    let l = &gw.config.login;
    match (l.has(SignInMethod::EmailCode), l.has(SignInMethod::SmsCode)) {
        (true, true) => flows::parse_contact,
        (true, false) => flows::parse_email,
        _ => flows::parse_phone,
    }
}

async fn contact_page(
    gw: &Gateway,
    req: &HttpRequest,
    which: AgainPage,
    rd: &str,
    contact: &str,
    error: &str,
) -> HttpResponse {
    let (path, title, intro, submit) = match which {
        AgainPage::Forgot => ("forgot", "forgot.title", "forgot.intro", "forgot.submit"),
        _ => ("sign_up", "signup.title", "signup.intro", "signup.submit"),
    };
    let mut view = View::new(gw, req, &format!("{PREFIX}/{path}?rd={}", enc(rd)));
    let guest = matches!(which, AgainPage::SignUp) && who(gw, req).await.1;
    let action = format!("{PREFIX}/{path}");
    let login_url = format!("{PREFIX}/?rd={}", enc(rd));
    let l = &gw.config.login;
    let (label, input_type, autocomplete, phone) =
        match (l.has(SignInMethod::EmailCode), l.has(SignInMethod::SmsCode)) {
            (true, true) => ("signup.contact", "text", "username", true),
            (true, false) => ("signup.email", "email", "email", false),
            _ => ("signup.phone", "tel", "tel", true),
        };
    let page = ContactFormPage {
        p: view.take(),
        title,
        intro,
        submit,
        action: &action,
        rd,
        contact,
        label,
        input_type,
        autocomplete,
        phone,
        guest,
        error,
        login_url: &login_url,
    };
    view.respond(StatusCode::OK, &page)
}

fn not_found(gw: &Gateway, req: &HttpRequest) -> HttpResponse {
    let inc = forms::incoming(gw, req);
    pages::error_response(&GatewayError::NotFound, &inc)
}

/// `GET /__auth/sign_up`: an e-mail or phone to register (the rest comes with the code).
pub async fn sign_up_page(req: HttpRequest, gw: web::Data<Gateway>) -> HttpResponse {
    if !sign_up_enabled(&gw) {
        return not_found(&gw, &req);
    }
    let rd = return_url(&gw, &Form::query(&req));
    contact_page(&gw, &req, AgainPage::SignUp, &rd, "", "").await
}

/// `POST /__auth/sign_up`: sends the code that confirms the contact.
pub async fn sign_up(
    req: HttpRequest,
    body: Body,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    if !sign_up_enabled(&gw) {
        return not_found(&gw, &req);
    }
    captcha::post(Resumable::SignUp, &gw, &req, &worker, &body).await
}

/// `GET /__auth/forgot`: the e-mail or phone of the account whose password is forgotten.
pub async fn forgot_page(req: HttpRequest, gw: web::Data<Gateway>) -> HttpResponse {
    if !forgot_enabled(&gw) {
        return not_found(&gw, &req);
    }
    let rd = return_url(&gw, &Form::query(&req));
    contact_page(&gw, &req, AgainPage::Forgot, &rd, "", "").await
}

/// `POST /__auth/forgot`: sends the code for a password reset.
pub async fn forgot(
    req: HttpRequest,
    body: Body,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    if !forgot_enabled(&gw) {
        return not_found(&gw, &req);
    }
    captcha::post(Resumable::Forgot, &gw, &req, &worker, &body).await
}

/// What the code page of a flow shows.
struct CodeView<'a> {
    flow: &'a str,
    username: &'a str,
    name: &'a str,
    notice: &'a str,
    error: &'a str,
}

fn code_page(
    gw: &Gateway,
    req: &HttpRequest,
    flow: &flows::CodeFlow,
    v: CodeView<'_>,
) -> HttpResponse {
    let mut view = View::new(gw, req, &format!("{PREFIX}/code?flow={}", v.flow));
    let (purpose, title, back, back_label) = match &flow.purpose {
        Purpose::SignIn => (
            "sign_in",
            "code.title",
            format!("{PREFIX}/?rd={}", enc(&flow.rd)),
            "code.start_over",
        ),
        Purpose::SignUp => (
            "sign_up",
            "signup.title",
            format!("{PREFIX}/sign_up?rd={}", enc(&flow.rd)),
            "code.start_over",
        ),
        Purpose::Reset => (
            "reset",
            "forgot.title",
            format!("{PREFIX}/forgot?rd={}", enc(&flow.rd)),
            "code.start_over",
        ),
        Purpose::Sudo { .. } => (
            "sudo",
            "sudo.title",
            format!("{PREFIX}/account"),
            "common.to_account",
        ),
        Purpose::Bind { .. } => (
            "bind",
            "code.title",
            format!("{PREFIX}/account"),
            "common.to_account",
        ),
    };
    let notice = if v.notice.is_empty() {
        ""
    } else {
        view.t(v.notice)
    };
    let page = CodePage {
        p: view.take(),
        title,
        flow: v.flow,
        contact: flow.contact.value(),
        purpose,
        verified: flow.verification_token.is_some(),
        username: v.username,
        name: v.name,
        notice,
        error: v.error,
        back: &back,
        back_label,
    };
    view.respond(StatusCode::OK, &page)
}

/// `GET /__auth/code?flow=ID`: the code-entry page of a flow of this browser; "start again"
/// when the flow is unknown, expired, used or another browser's.
pub async fn code_entry(
    req: HttpRequest,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let page = Posted::page(&gw, &req, None);
    let q = &page.form;
    match code::load(&page.ctx(&gw, &worker), q.get("flow")).await {
        Ok(flow) => code_page(
            &gw,
            &req,
            &flow,
            CodeView {
                flow: q.get("flow"),
                username: "",
                name: "",
                notice: if q.has("resent") { "code.resent" } else { "" },
                error: "",
            },
        ),
        Err(_) => pages::error_response(&GatewayError::FlowExpired, &page.inc),
    }
}

/// `POST /__auth/code`: checks the code and completes the flow's step.
pub async fn code_submit(
    req: HttpRequest,
    body: Body,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    captcha::post(Resumable::CodeSubmit, &gw, &req, &worker, &body).await
}

/// `POST /__auth/code/resend`: sends a new code for the flow.
pub async fn code_resend(
    req: HttpRequest,
    body: Body,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    captcha::post(Resumable::CodeResend, &gw, &req, &worker, &body).await
}

/// The code page again after `e`, with the flow as it is now (it may have kept a verified
/// code) and what was typed; "start again" when the flow is gone.
async fn code_again(
    gw: &Gateway,
    req: &HttpRequest,
    post: &Posted,
    ctx: &crate::flows::Ctx<'_>,
    e: &FlowError,
) -> HttpResponse {
    let id = post.form.get("flow");
    match code::load(ctx, id).await {
        Ok(flow) => {
            let message = forms::message(gw, req, e);
            let page = code_page(
                gw,
                req,
                &flow,
                CodeView {
                    flow: id,
                    username: post.form.get("username").trim(),
                    name: post.form.get("name").trim(),
                    notice: "",
                    error: &message,
                },
            );
            forms::error_response(&post.inc, e, Some(page))
        }
        Err(_) => forms::error_response(&post.inc, &FlowError::StartAgain, None),
    }
}

/// `GET /__auth/signed_out`: where signing out ends when no return URL was given.
pub async fn signed_out(req: HttpRequest, gw: web::Data<Gateway>) -> HttpResponse {
    let mut view = View::new(&gw, &req, &format!("{PREFIX}/signed_out"));
    let page = SignedOutPage {
        p: view.take(),
        partial: Form::query(&req).get("partial") == "1",
    };
    view.respond(StatusCode::OK, &page)
}

/// The pages' stylesheet.
const CSS: &str = include_str!("../../static/gateway.css");

/// `GET /__auth/static/gateway.css`: the pages' stylesheet (embedded in the binary).
pub async fn static_file() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(CSS)
}
