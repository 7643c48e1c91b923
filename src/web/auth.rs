//! Handlers of the gateway's own endpoints that need a browser session: the minimal password
//! sign-in page (until the hosted login pages land), sign-out and userinfo. Each reads its
//! input, calls the session manager or the CloudBase client, and maps the result.

use std::collections::HashMap;

use actix_web::cookie::Cookie;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::pages::{self, LoginPage, SignOutPage};
use super::{Gateway, Worker, PREFIX};
use crate::cloudbase::client::CallContext;
use crate::cloudbase::types::{format_phone, SignInRequest};
use crate::error::GatewayError;
use crate::secret::Secret;
use crate::session::manager::snapshot;

/// Largest form body read.
const MAX_FORM: usize = 16 * 1024;

/// This browser's CSRF cookie value, and the cookie to set when it had none.
fn csrf(gw: &Gateway, req: &HttpRequest) -> (String, Option<Cookie<'static>>) {
    let cookies = gw.sessions.cookies();
    match req.cookie(cookies.csrf_name()) {
        Some(c) if !c.value().is_empty() && c.value().len() <= 64 => (c.value().to_string(), None),
        _ => {
            let (value, cookie) = cookies.new_csrf(gw.entropy.as_ref());
            (value, Some(cookie))
        }
    }
}

/// Checks the form's `csrf` field against the CSRF cookie.
fn check_csrf(
    gw: &Gateway,
    req: &HttpRequest,
    form: &HashMap<String, String>,
) -> Result<(), GatewayError> {
    let cookie = req.cookie(gw.sessions.cookies().csrf_name());
    let token = form.get("csrf").map(String::as_str).unwrap_or_default();
    match cookie {
        Some(c) if gw.sessions.cookies().csrf_ok(c.value(), token) => Ok(()),
        _ => Err(GatewayError::Csrf),
    }
}

fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, GatewayError> {
    if body.len() > MAX_FORM {
        return Err(GatewayError::BodyTooLarge);
    }
    Ok(url::form_urlencoded::parse(body).into_owned().collect())
}

/// A posted form whose CSRF token matches this browser's CSRF cookie, and its validated
/// return URL.
fn csrf_form(
    gw: &Gateway,
    req: &HttpRequest,
    body: &[u8],
) -> Result<(HashMap<String, String>, String), GatewayError> {
    let form = parse_form(body)?;
    check_csrf(gw, req, &form)?;
    let rd = return_url(gw, &form);
    Ok((form, rd))
}

fn query(req: &HttpRequest) -> HashMap<String, String> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect()
}

/// The return URL from `rd` or CloudBase's `redirect_uri`, validated.
fn return_url(gw: &Gateway, params: &HashMap<String, String>) -> String {
    let raw = params
        .get("rd")
        .or_else(|| params.get("redirect_uri"))
        .map(String::as_str)
        .unwrap_or("/");
    gw.return_urls.validate(raw)
}

fn login_page(
    gw: &Gateway,
    req: &HttpRequest,
    status: StatusCode,
    rd: &str,
    username: &str,
    error: &str,
) -> HttpResponse {
    let (value, set) = csrf(gw, req);
    let token = gw.sessions.cookies().csrf_token(&value);
    let mut resp = pages::html(
        status,
        &LoginPage {
            prefix: PREFIX,
            csrf: &token,
            rd,
            username,
            error,
        },
    );
    if let Some(c) = set {
        let _ = resp.add_cookie(&c);
    }
    resp
}

/// `GET /__auth/`: the sign-in page. Accepts `rd`, or CloudBase's `redirect_uri`.
pub async fn login(req: HttpRequest, gw: web::Data<Gateway>) -> HttpResponse {
    let rd = return_url(&gw, &query(&req));
    login_page(&gw, &req, StatusCode::OK, &rd, "", "")
}

/// `POST /__auth/sign_in/password`: password sign-in; on success a new session cookie and a
/// 302 to the validated return URL.
pub async fn sign_in_password(
    req: HttpRequest,
    body: web::Bytes,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let inc = gw.incoming(&req);
    let (form, rd) = match csrf_form(&gw, &req, &body) {
        Ok(f) => f,
        Err(e) => return pages::error_response(&e, &inc),
    };
    let username = form.get("username").map(|s| s.trim()).unwrap_or_default();
    let password = form.get("password").map(String::as_str).unwrap_or_default();
    if username.is_empty() || password.is_empty() || username.len() > 256 || password.len() > 1024 {
        return login_page(
            &gw,
            &req,
            StatusCode::BAD_REQUEST,
            &rd,
            username,
            "Enter your user name and password.",
        );
    }
    // A bare phone number is sent as the SDK sends it: `+86 138…`.
    let login_name = if username
        .chars()
        .all(|c| c.is_ascii_digit() || c == '+' || c == ' ')
        && username.chars().filter(char::is_ascii_digit).count() >= 6
    {
        format_phone(username)
    } else {
        username.to_string()
    };
    let device_id = gw.sessions.new_device_id();
    // Every CloudBase call gets its own x-request-id, as the SDK does; the request span
    // ties them to this request in the logs.
    let ctx = CallContext::new(device_id.clone());
    let request = SignInRequest {
        username: login_name,
        password: Some(Secret::new(password)),
        verification_token: None,
    };
    let creds = match worker.cloudbase.signin(&ctx, &request).await {
        Ok(c) => c,
        Err(e) => {
            let (status, message) = match e.code() {
                Some("not_found") | Some("invalid_password") | Some("invalid_argument") => {
                    (StatusCode::UNAUTHORIZED, "Wrong user name or password.")
                }
                Some("password_not_set") => (
                    StatusCode::UNAUTHORIZED,
                    "This account has no password. Sign in another way.",
                ),
                Some("user_blocked") => (StatusCode::FORBIDDEN, "This account is blocked."),
                Some("user_pending") => (StatusCode::FORBIDDEN, "This account is not active yet."),
                Some("resource_exhausted") => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many attempts. Wait a while and try again.",
                ),
                Some("captcha_required") | Some("captcha_invalid") => (
                    StatusCode::FORBIDDEN,
                    "The sign-in service asks for a captcha, which this page cannot show yet.",
                ),
                _ if e.is_unavailable() => {
                    return pages::error_response(&GatewayError::CloudBaseUnavailable, &inc)
                }
                _ => (StatusCode::BAD_REQUEST, "Sign-in failed. Try again."),
            };
            tracing::info!(error = e.code(), request_id = %inc.request_id, "password sign-in refused");
            return login_page(&gw, &req, status, &rd, username, message);
        }
    };
    let profile = worker
        .cloudbase
        .user_me(&ctx, &creds.access_token)
        .await
        .unwrap_or_default();
    let user = snapshot(&profile, &creds.groups);
    let started = match gw.sessions.start(&creds, user, &device_id).await {
        Ok(s) => s,
        Err(e) => return pages::error_response(&e.into(), &inc),
    };
    gw.metrics.sign_in("password");
    tracing::info!(request_id = %inc.request_id, sub = %creds.sub, "signed in with password");
    pages::redirect(&rd)
        .cookie(
            gw.sessions
                .cookies()
                .session(started.cookie_value, started.max_age_secs),
        )
        .finish()
}

/// `GET /__auth/sign_out`: asks for confirmation (a GET must not sign anyone out: a link or
/// image on another site could).
pub async fn sign_out_page(req: HttpRequest, gw: web::Data<Gateway>) -> HttpResponse {
    let rd = return_url(&gw, &query(&req));
    let who = match gw
        .sessions
        .load(
            req.cookie(gw.sessions.cookies().session_name())
                .as_ref()
                .map(|c| c.value()),
        )
        .await
    {
        Ok(Some(l)) => {
            let u = &l.record.user;
            [&u.username, &u.email, &u.phone, &u.name]
                .into_iter()
                .find(|s| !s.is_empty())
                .cloned()
                .unwrap_or_else(|| {
                    if l.record.is_anonymous() {
                        "a guest".into()
                    } else {
                        l.record.sub.clone()
                    }
                })
        }
        _ => String::new(),
    };
    let (value, set) = csrf(&gw, &req);
    let token = gw.sessions.cookies().csrf_token(&value);
    let mut resp = pages::html(
        StatusCode::OK,
        &SignOutPage {
            prefix: PREFIX,
            csrf: &token,
            rd: &rd,
            who: &who,
        },
    );
    if let Some(c) = set {
        let _ = resp.add_cookie(&c);
    }
    resp
}

/// `POST /__auth/sign_out`: revokes the token at CloudBase, deletes the session, clears the
/// cookie and sends the browser to the validated `rd`.
pub async fn sign_out(
    req: HttpRequest,
    body: web::Bytes,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let inc = gw.incoming(&req);
    let (_, rd) = match csrf_form(&gw, &req, &body) {
        Ok(f) => f,
        Err(e) => return pages::error_response(&e, &inc),
    };
    let cookie = req.cookie(gw.sessions.cookies().session_name());
    match gw.sessions.load(cookie.as_ref().map(|c| c.value())).await {
        Ok(Some(loaded)) => {
            if let Err(e) = gw.sessions.end(&worker.cloudbase, &loaded).await {
                return pages::error_response(&e.into(), &inc);
            }
            tracing::info!(request_id = %inc.request_id, sub = %loaded.record.sub, "signed out");
        }
        Ok(None) => {}
        Err(e) => return pages::error_response(&e.into(), &inc),
    }
    pages::redirect(&rd)
        .cookie(gw.sessions.cookies().clear_session())
        .finish()
}

/// `GET /__auth/userinfo`: the signed-in user as JSON (never the tokens); 401 without a
/// session.
pub async fn userinfo(
    req: HttpRequest,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let mut inc = gw.incoming(&req);
    inc.navigation = false;
    let lookup = match gw.session(&req, &worker).await {
        Ok(l) => l,
        Err(e) => return pages::error_response(&e, &inc),
    };
    let Some(loaded) = lookup.session else {
        let mut resp = pages::json_error(&GatewayError::Unauthenticated);
        if let Some(c) = &lookup.set_cookie {
            let _ = resp.add_cookie(c);
        }
        return resp;
    };
    let r = &loaded.record;
    let mut b = HttpResponse::Ok();
    pages::no_store(&mut b);
    if let Some(c) = lookup.set_cookie {
        b.cookie(c);
    }
    b.json(serde_json::json!({
        "sub": r.sub,
        "name": r.user.name,
        "username": r.user.username,
        "email": r.user.email,
        "phone_number": r.user.phone,
        "picture": r.user.picture,
        "groups": r.user.groups,
        "scope": r.scope,
        "anonymous": r.is_anonymous(),
    }))
}
