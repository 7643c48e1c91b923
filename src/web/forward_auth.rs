//! `GET /__auth/auth`: forward-auth for nginx `auth_request`, Traefik ForwardAuth and Caddy
//! `forward_auth`. 202 with identity headers when the policy allows, 401 without a session,
//! 403 when the policy refuses; never a redirect. The original request's host, URI and method
//! come from `X-Forwarded-Host/-Uri/-Method` only when a trusted proxy sent them.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

use super::pages;
use super::{host_without_port, Gateway, Worker};
use crate::config::Policy;
use crate::error::GatewayError;
use crate::proxy::policy::{decide, normalize_path, Decision};

/// Set once the misconfiguration warning has been logged.
static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The handler.
pub async fn auth(
    req: HttpRequest,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let mut inc = gw.incoming(&req);
    // A forward-auth answer is read by a proxy, never rendered: always JSON, never a redirect.
    inc.navigation = false;
    let trusted_header = |name: &str| {
        inc.trusted
            .then(|| req.headers().get(name))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let host = trusted_header("x-forwarded-host")
        .map(|h| host_without_port(h.split(',').next().unwrap_or_default().trim()))
        .unwrap_or_else(|| inc.host.clone());
    if !inc.trusted
        && (req.headers().contains_key("x-forwarded-uri")
            || req.headers().contains_key("x-original-uri"))
        && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::warn!(
            peer = ?inc.peer,
            "forward-auth request carries X-Forwarded-Uri from an address not in trusted_proxies; it is ignored and the policy of / applies (add the proxy to trusted_proxies)"
        );
    }
    let uri = trusted_header("x-forwarded-uri")
        .or_else(|| trusted_header("x-original-uri"))
        .unwrap_or_else(|| "/".to_string());
    let Some(path) = normalize_path(&uri) else {
        return pages::json_error(&GatewayError::BadRequest(
            "The forwarded URI is not a valid path.",
        ));
    };

    let public = gw
        .routes
        .find(&host, &path)
        .is_some_and(|(_, r)| r.policy == Policy::Public);
    let lookup = match gw.session(&req, &worker).await {
        Ok(l) => l,
        // A public route needs no session: let it through while CloudBase is down.
        Err(GatewayError::CloudBaseUnavailable) if public => super::SessionLookup {
            session: None,
            set_cookie: None,
        },
        Err(e) => return pages::error_response(&e, &inc),
    };
    let record = lookup.session.as_ref().map(|l| l.record.as_ref());
    let decision = gw
        .routes
        .check(&host, &uri, &path, record)
        .map(|(_, d)| d)
        .unwrap_or_else(|| decide(&Policy::Authenticated, record));
    let mut resp = match decision {
        Decision::SignIn => pages::json_error(&GatewayError::Unauthenticated),
        Decision::Forbidden => pages::json_error(&GatewayError::Forbidden),
        Decision::Allow => {
            let mut b = HttpResponse::Accepted();
            pages::no_store(&mut b);
            let mut resp = b.finish();
            if let Some(r) = record {
                let h = resp.headers_mut();
                let mut put = |name: &'static str, value: &str| {
                    if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
                        h.insert(header::HeaderName::from_static(name), v);
                    }
                };
                put("x-auth-request-user", &r.sub);
                put("x-auth-request-email", &r.user.email);
                put(
                    "x-auth-request-preferred-username",
                    if r.user.username.is_empty() {
                        &r.user.name
                    } else {
                        &r.user.username
                    },
                );
                put("x-auth-request-groups", &r.user.groups.join(","));
                put("x-auth-request-scope", &r.scope);
                if let Some((bearer, bare)) = r.token_headers() {
                    h.insert(
                        header::HeaderName::from_static("x-auth-request-access-token"),
                        bare.clone(),
                    );
                    h.insert(header::AUTHORIZATION, bearer.clone());
                }
            }
            resp
        }
    };
    if let Some(c) = &lookup.set_cookie {
        let _ = resp.add_cookie(c);
    }
    resp
}
