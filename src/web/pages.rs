//! The gateway's pages (askama templates under `templates/gateway/`) and the one place error
//! responses are built: a page for navigations, JSON for everything else.

use actix_web::http::header;
use actix_web::{HttpResponse, HttpResponseBuilder};
use askama::Template;

use super::{Incoming, PREFIX};
use crate::error::GatewayError;

/// The error page.
#[derive(Template)]
#[template(path = "gateway/error.html")]
pub struct ErrorPage<'a> {
    /// Heading.
    pub title: &'a str,
    /// What happened, for a person.
    pub message: &'a str,
    /// Where the link goes.
    pub back: &'a str,
    /// The link's text.
    pub back_label: &'a str,
    /// For support.
    pub request_id: &'a str,
}

/// The (minimal) password sign-in page.
#[derive(Template)]
#[template(path = "gateway/login.html")]
pub struct LoginPage<'a> {
    /// Endpoint prefix.
    pub prefix: &'a str,
    /// CSRF token for the form.
    pub csrf: &'a str,
    /// Validated return URL.
    pub rd: &'a str,
    /// The user name typed before (never the password).
    pub username: &'a str,
    /// A message for the person, empty when none.
    pub error: &'a str,
}

/// The sign-out confirmation page.
#[derive(Template)]
#[template(path = "gateway/sign_out.html")]
pub struct SignOutPage<'a> {
    /// Endpoint prefix.
    pub prefix: &'a str,
    /// CSRF token for the form.
    pub csrf: &'a str,
    /// Validated return URL.
    pub rd: &'a str,
    /// Who is signed in (empty when nobody).
    pub who: &'a str,
}

/// A rendered page with the security headers every gateway page carries.
pub fn html(status: actix_web::http::StatusCode, page: &impl Template) -> HttpResponse {
    let body = page
        .render()
        .unwrap_or_else(|_| "<!doctype html><title>Error</title><p>Error</p>".into());
    let mut b = HttpResponse::build(status);
    no_store(&mut b);
    b.insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'",
        ))
        .body(body)
}

/// Marks a response as never to be cached (pages with tokens, redirects that set cookies).
pub fn no_store(b: &mut HttpResponseBuilder) {
    b.insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
}

/// The response for `err`: a page for navigations, JSON otherwise. Logged here, once.
pub fn error_response(err: &GatewayError, inc: &Incoming) -> HttpResponse {
    if err.is_server_side() {
        tracing::warn!(error = err.code(), request_id = %inc.request_id, "request failed");
    } else {
        tracing::info!(error = err.code(), request_id = %inc.request_id, "request refused");
    }
    let status = err.status();
    if inc.navigation {
        let (back, label) = match err {
            GatewayError::Forbidden => (format!("{PREFIX}/sign_out"), "Sign in as someone else"),
            GatewayError::Unauthenticated | GatewayError::Csrf | GatewayError::CloudBase(_) => {
                (format!("{PREFIX}/"), "Go to the sign-in page")
            }
            _ => ("/".to_string(), "Go to the start page"),
        };
        let mut resp = html(
            status,
            &ErrorPage {
                title: err.title(),
                message: err.description(),
                back: &back,
                back_label: label,
                request_id: &inc.request_id,
            },
        );
        if status == actix_web::http::StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("10"));
        }
        resp
    } else {
        json_error(err)
    }
}

/// `{"error", "error_description"}` with the error's status.
pub fn json_error(err: &GatewayError) -> HttpResponse {
    let mut b = HttpResponse::build(err.status());
    no_store(&mut b);
    if matches!(err, GatewayError::Unauthenticated) {
        b.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
    }
    if err.status() == actix_web::http::StatusCode::SERVICE_UNAVAILABLE {
        b.insert_header((header::RETRY_AFTER, "10"));
    }
    b.json(serde_json::json!({
        "error": err.code(),
        "error_description": err.description(),
    }))
}

/// A 302 to `location` that is never cached.
pub fn redirect(location: &str) -> HttpResponseBuilder {
    let mut b = HttpResponse::Found();
    no_store(&mut b);
    b.insert_header((header::LOCATION, location.to_string()));
    b
}
