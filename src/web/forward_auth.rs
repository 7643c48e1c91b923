//! `GET /__auth/auth`: forward-auth for nginx `auth_request`. 202 with identity headers when
//! the policy allows, 401 without a session, 403 when the policy refuses; never a redirect.
//!
//! Which request is asked about comes from one documented set of headers, and only from a
//! caller in `trusted_proxies` (anyone else gets 403, or with
//! `forward_auth_without_trusted_proxy = "root_policy"` the policy of `/`):
//!
//! - `X-Original-URL` (a full URL, or a path), else `X-Forwarded-Uri`, else `X-Original-URI`;
//!   nginx passes the browser's own headers to the subrequest unless its configuration sets
//!   each one, so every one of them that is present must name the same path, and none may
//!   repeat (400 otherwise): a browser's extra `X-Forwarded-Uri: /public` cannot stand in for
//!   the URI nginx set;
//! - the host is the `Host` nginx sends (`proxy_set_header Host $host`), never
//!   `X-Forwarded-Host`, which nginx would pass on from the browser; an `X-Original-URL` naming
//!   another host is refused (400).
//!
//! The access token (`Authorization`, `X-Auth-Request-Access-Token`) goes only to a trusted
//! proxy, and only with `forward_auth_pass_access_token`: any script on the origin could
//! otherwise `fetch` this endpoint and read it. Nor does it go out when the request asked
//! about is one of the gateway's own paths: that is a script fetching this endpoint through a
//! proxy that exposes it, not a proxy checking a page.

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

use super::pages;
use super::{host_without_port, Gateway, Worker};
use crate::config::{Policy, UntrustedForwardAuth};
use crate::error::GatewayError;
use crate::proxy::policy::{decide, normalize_path, Decision};

/// The URI headers, in the order they are preferred.
const URI_HEADERS: [&str; 3] = ["x-original-url", "x-forwarded-uri", "x-original-uri"];

/// The handler.
pub async fn auth(
    req: HttpRequest,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let mut inc = gw.incoming(&req);
    // A forward-auth answer is read by a proxy, never rendered: always JSON, never a redirect.
    inc.navigation = false;
    let mode = gw.config.forward_auth.without_trusted_proxy;
    let uri = match original_uri(req.headers(), &inc.host, inc.trusted, mode) {
        Ok(uri) => uri,
        Err(e) => {
            static HINT: crate::telemetry::Throttle = crate::telemetry::Throttle::new();
            if matches!(e, GatewayError::UntrustedProxy) && HINT.ready(gw.clock.unix_secs(), 60) {
                tracing::warn!(
                    peer = ?inc.peer,
                    "forward-auth refused: the caller is not in trusted_proxies, so it cannot say which request it asks about; add the proxy's address to trusted_proxies"
                );
            }
            return pages::error_response(&e, &inc);
        }
    };
    let Some(path) = normalize_path(&uri) else {
        return pages::error_response(
            &GatewayError::BadRequest("The forwarded URI is not a valid path."),
            &inc,
        );
    };

    let public = gw
        .routes
        .find(&inc.host, &path)
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
        .check(&inc.host, &uri, &path, record)
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
                if inc.trusted
                    && gw.config.forward_auth.pass_access_token
                    && !super::is_own_path(&path)
                {
                    if let Some((bearer, bare)) = r.token_headers() {
                        h.insert(
                            header::HeaderName::from_static("x-auth-request-access-token"),
                            bare.clone(),
                        );
                        h.insert(header::AUTHORIZATION, bearer.clone());
                    }
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

/// The path and query of the request the proxy asks about, read from the URI headers of a
/// trusted caller (see the module's documentation); `host` is the caller's `Host`, without
/// port.
///
/// Fails with [`GatewayError::UntrustedProxy`] for an untrusted caller (unless `mode` says to
/// check `/`), and [`GatewayError::BadRequest`] for a URI header that repeats, headers that
/// name different paths, an `X-Original-URL` for another host, or no URI header at all.
pub fn original_uri(
    headers: &HeaderMap,
    host: &str,
    trusted: bool,
    mode: UntrustedForwardAuth,
) -> Result<String, GatewayError> {
    if !trusted {
        return match mode {
            UntrustedForwardAuth::Deny => Err(GatewayError::UntrustedProxy),
            UntrustedForwardAuth::RootPolicy => Ok("/".to_string()),
        };
    }
    let mut found: Vec<String> = Vec::with_capacity(URI_HEADERS.len());
    for name in URI_HEADERS {
        let mut values = headers.get_all(name);
        let Some(value) = values.next() else {
            continue;
        };
        if values.next().is_some() {
            return Err(GatewayError::BadRequest(
                "A forwarded URI header is repeated.",
            ));
        }
        let value = value
            .to_str()
            .map_err(|_| GatewayError::BadRequest("A forwarded URI header is not readable."))?
            .trim();
        let uri = if name == "x-original-url" {
            url_path(value, host)?
        } else {
            value.to_string()
        };
        // A request line never carries a fragment: one here is a trick, not a URI.
        if !uri.starts_with('/') || uri.contains('#') {
            return Err(GatewayError::BadRequest(
                "A forwarded URI header is not a path.",
            ));
        }
        found.push(uri);
    }
    let Some(first) = found.first() else {
        return match mode {
            UntrustedForwardAuth::RootPolicy => Ok("/".to_string()),
            UntrustedForwardAuth::Deny => Err(GatewayError::BadRequest(
                "Set X-Original-URL or X-Forwarded-Uri to the URI being checked.",
            )),
        };
    };
    let path = |u: &str| u.split(['?', '#']).next().unwrap_or_default().to_string();
    if found.iter().any(|u| path(u) != path(first)) {
        return Err(GatewayError::BadRequest(
            "The forwarded URI headers name different paths.",
        ));
    }
    Ok(first.clone())
}

/// The path and query of `X-Original-URL`: a path as it is, or a full http(s) URL whose
/// authority is a plain `host[:port]` for `host`, followed by nothing or a path (the path is
/// taken as written, so the policy sees the raw path too). Anything else after the authority
/// is refused: a browser's `Host: app.example.com:1#` would otherwise turn nginx's
/// `$scheme://$http_host$request_uri` into a URL whose path is `/`.
fn url_path(value: &str, host: &str) -> Result<String, GatewayError> {
    if value.starts_with('/') {
        return Ok(value.to_string());
    }
    let bad = || GatewayError::BadRequest("X-Original-URL is not an http(s) URL of this host.");
    let (scheme, rest) = value.split_once("://").ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(bad());
    }
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if !super::plain_authority(authority) || host_without_port(authority) != host {
        return Err(bad());
    }
    match path.chars().next() {
        None => Ok("/".to_string()),
        Some('/') => Ok(path.to_string()),
        Some(_) => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderName;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        m
    }

    fn read(pairs: &[(&'static str, &'static str)]) -> Result<String, String> {
        original_uri(
            &h(pairs),
            "app.example.com",
            true,
            UntrustedForwardAuth::Deny,
        )
        .map_err(|e| e.code().to_string())
    }

    #[test]
    fn the_uri_comes_from_agreeing_headers_of_a_trusted_caller() {
        assert_eq!(read(&[("x-forwarded-uri", "/a?b=1")]).unwrap(), "/a?b=1");
        assert_eq!(
            read(&[("x-original-url", "https://App.Example.com:8443/a?b=1")]).unwrap(),
            "/a?b=1"
        );
        assert_eq!(
            read(&[("x-original-url", "http://app.example.com")]).unwrap(),
            "/"
        );
        assert_eq!(read(&[("x-original-uri", "/x")]).unwrap(), "/x");
        assert_eq!(
            read(&[
                ("x-original-url", "https://app.example.com/admin?x"),
                ("x-forwarded-uri", "/admin"),
            ])
            .unwrap(),
            "/admin?x",
            "the query takes no part in agreeing"
        );
        for bad in [
            &[("x-original-uri", "/admin"), ("x-forwarded-uri", "/public")][..],
            &[
                ("x-original-url", "https://app.example.com/admin"),
                ("x-forwarded-uri", "/public"),
            ],
            &[
                ("x-forwarded-uri", "/admin"),
                ("x-forwarded-uri", "/public"),
            ],
            &[("x-original-url", "https://open.example.com/admin")],
            &[("x-original-url", "https://x@app.example.com/admin")],
            &[("x-original-url", "javascript://app.example.com/x")],
            &[("x-original-url", "https://app.example.com:1#/admin")],
            &[("x-original-url", "https://app.example.com:1?/admin")],
            &[(
                "x-original-url",
                "https://app.example.com:1@evil.example/admin",
            )],
            &[("x-forwarded-uri", "/#/admin")],
            &[("x-forwarded-uri", "admin")],
            &[],
        ] {
            assert_eq!(read(bad), Err("bad_request".to_string()), "{bad:?}");
        }
        let untrusted = original_uri(
            &h(&[("x-forwarded-uri", "/public")]),
            "app.example.com",
            false,
            UntrustedForwardAuth::Deny,
        );
        assert!(matches!(untrusted, Err(GatewayError::UntrustedProxy)));
        let root = original_uri(
            &h(&[("x-forwarded-uri", "/public")]),
            "app.example.com",
            false,
            UntrustedForwardAuth::RootPolicy,
        );
        assert_eq!(root.unwrap(), "/");
    }
}
