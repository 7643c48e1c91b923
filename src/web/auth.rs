//! Handlers of the gateway's own endpoints around a session: sign-out, userinfo, and custom
//! tickets (`POST /__auth/ticket`). Each reads its input, calls the session manager or a flow,
//! and maps the result.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::body::Body;
use super::forms::{self, csrf_form, return_url, Form, View};
use super::pages::{self, SignOutPage};
use super::{Gateway, Worker, PREFIX};
use crate::config::SignInMethod;
use crate::error::GatewayError;
use crate::flow::store::Browser;
use crate::flows::{ticket, Outcome};
use crate::secret::Secret;

/// `GET /__auth/sign_out`: asks for confirmation (a GET must not sign anyone out: a link or
/// image on another site could).
pub async fn sign_out_page(req: HttpRequest, gw: web::Data<Gateway>) -> HttpResponse {
    let q = Form::query(&req);
    let rd = if q.has("rd") {
        return_url(&gw, &q)
    } else {
        String::new()
    };
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
                .or_else(|| (!l.record.is_anonymous()).then(|| l.record.sub.clone()))
                .or(Some(String::new()))
        }
        _ => None,
    };
    let mut view = View::new(
        &gw,
        &req,
        &format!("{PREFIX}/sign_out?rd={}", forms::enc(&rd)),
    );
    let who = match who {
        Some(w) if w.is_empty() => view.t("signout.guest").to_string(),
        Some(w) => w,
        None => String::new(),
    };
    let stay = if rd.is_empty() {
        "/".to_string()
    } else {
        rd.clone()
    };
    let page = SignOutPage {
        p: view.take(),
        rd: &rd,
        stay: &stay,
        who: &who,
    };
    view.respond(StatusCode::OK, &page)
}

/// `POST /__auth/sign_out`: revokes the token at CloudBase, deletes the session, clears the
/// cookie and sends the browser to the validated `rd`. With `everywhere=1` (the account page's
/// "sign out everywhere"), every session of the user ends, on every device.
pub async fn sign_out(
    req: HttpRequest,
    body: Body,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let inc = forms::incoming(&gw, &req);
    let (form, _) = match csrf_form(&gw, &req, &body) {
        Ok(f) => f,
        Err(e) => return forms::refused_post(&gw, &req, &inc, &e, &body),
    };
    // Without a return URL the browser lands on the signed-out page.
    let rd = if form.get("rd").is_empty() {
        format!("{PREFIX}/signed_out")
    } else {
        return_url(&gw, &form)
    };
    let cookie = req.cookie(gw.sessions.cookies().session_name());
    let everywhere = form.get("everywhere") == "1";
    let mut rd = rd;
    match gw.sessions.load(cookie.as_ref().map(|c| c.value())).await {
        Ok(Some(loaded)) => {
            let sub = loaded.record.sub.clone();
            let ended = if everywhere {
                // `user/revoke/all` needs a live access token; with CloudBase away the
                // gateway's sessions still end.
                let loaded = match gw.sessions.fresh(&worker.cloudbase, loaded.clone()).await {
                    Ok(l) => l,
                    Err(_) => loaded,
                };
                gw.sessions.end_everywhere(&worker.cloudbase, &loaded).await
            } else {
                gw.sessions
                    .end(&worker.cloudbase, &loaded)
                    .await
                    .map(|_| true)
            };
            match ended {
                Err(e) => return pages::error_response(&e.into(), &inc),
                // Signed out here everywhere, but CloudBase did not confirm the rest: the
                // signed-out page says so, whatever the return URL.
                Ok(false) => rd = format!("{PREFIX}/signed_out?partial=1"),
                Ok(true) => {}
            }
            tracing::info!(request_id = %inc.request_id, sub = %sub, everywhere, "signed out");
        }
        Ok(None) => {}
        Err(e) => return pages::error_response(&e.into(), &inc),
    }
    pages::redirect(&rd)
        .cookie(gw.sessions.cookies().clear_session())
        .cookie(gw.sessions.cookies().clear_csrf())
        .finish()
}

/// `GET /__auth/userinfo`: the signed-in user as JSON (never the tokens); 401 without a
/// session.
pub async fn userinfo(
    req: HttpRequest,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let mut inc = forms::incoming(&gw, &req);
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

/// `POST /__auth/ticket`: signs in with a custom-login ticket.
///
/// - A form post (`ticket`, `rd` and `csrf`, the token required as on every form: a plain
///   HTML form in the app behind us, which shares our origin, must not be able to sign the
///   visitor into someone else's account) ends in the session cookie and a 302 to the
///   validated `rd`.
/// - A JSON post (`Content-Type: application/json`, `{"ticket", "rd"}`; browsers cannot send
///   that cross-site without CORS, which the gateway never grants, and a foreign `Origin` is
///   refused besides) answers `{"sub", "scope", "anonymous", "rd", "expires_in"}` with the
///   session cookie in `Set-Cookie`, for an app's own code or backend that obtains the cookie
///   for its user.
pub async fn ticket_sign_in(
    req: HttpRequest,
    body: Body,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let mut inc = forms::incoming(&gw, &req);
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    inc.navigation = !json && !super::wants_json(req.headers());
    if !gw.config.login.has(SignInMethod::Ticket) {
        return pages::error_response(&GatewayError::NotFound, &inc);
    }
    let (ticket, rd, browser) = if json {
        if forms::post_origin(&gw, &req) == forms::PostOrigin::Foreign {
            return pages::error_response(&GatewayError::Csrf, &inc);
        }
        #[derive(serde::Deserialize)]
        struct Body {
            ticket: String,
            #[serde(default)]
            rd: Option<String>,
        }
        let parsed: Body = match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(_) => {
                return pages::error_response(
                    &GatewayError::BadRequest(
                        "Expected a JSON body {\"ticket\": \"…\", \"rd\": \"/…\"}.",
                    ),
                    &inc,
                )
            }
        };
        let rd = gw.return_urls.validate(parsed.rd.as_deref().unwrap_or("/"));
        let (csrf, _) = forms::csrf_cookie(&gw, &req);
        (Secret::new(parsed.ticket), rd, Browser::from_csrf(&csrf))
    } else {
        let (form, browser) = match csrf_form(&gw, &req, &body) {
            Ok(f) => f,
            Err(e) => return pages::error_response(&e, &inc),
        };
        (
            Secret::new(form.get("ticket")),
            return_url(&gw, &form),
            browser,
        )
    };
    let current = forms::current_session(&gw, &req, &worker).await;
    let lang = gw.lang_of(&req);
    let ctx = forms::ctx(&gw, &worker, &inc, browser, lang, current.as_ref());
    match ticket::sign_in(&ctx, ticket, rd).await {
        Ok(Outcome::SignedIn { started, rd }) if json => {
            let r = &started.record;
            let mut b = HttpResponse::Ok();
            pages::no_store(&mut b);
            b.cookie(
                gw.sessions
                    .cookies()
                    .session(started.cookie_value.clone(), started.max_age_secs),
            )
            .json(serde_json::json!({
                "sub": r.sub,
                "scope": r.scope,
                "anonymous": r.is_anonymous(),
                "rd": rd,
                "expires_in": started.max_age_secs,
            }))
        }
        Ok(o) => forms::outcome_response(&gw, o),
        // A ticket post has no form of its own to show again: an error page says what
        // happened (JSON for JSON callers).
        Err(e) => forms::error_response(&inc, &e, None),
    }
}
