//! Header hygiene and identity injection for requests going upstream, and hop-by-hop removal
//! for responses coming back. Nothing a client sends can pass as the gateway's identity
//! headers: every case and `_` / `-` spelling of them is removed before ours are set.

use std::net::IpAddr;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::session::SessionRecord;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the
/// non-standard ones proxies also drop.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers only the gateway may set upstream (compared after lower-casing and `_` → `-`).
const RESERVED: &[&str] = &[
    "authorization",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
    "x-forwarded-access-token",
    "x-cloudbase-scope",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-forwarded-prefix",
    "x-real-ip",
    "forwarded",
    "x-request-id",
];

/// Whether `name` is one of the gateway's identity or forwarding headers in any spelling.
pub fn is_reserved(name: &str) -> bool {
    let n: String = name
        .chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    RESERVED.contains(&n.as_str()) || n.starts_with("x-auth-request-")
}

/// Whether `name` is a hop-by-hop header, by the fixed list or the message's `Connection`.
fn is_hop_by_hop(name: &HeaderName, connection_tokens: &[String]) -> bool {
    HOP_BY_HOP.contains(&name.as_str()) || connection_tokens.iter().any(|t| t == name.as_str())
}

fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("connection")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// How the request reached the gateway, for the `X-Forwarded-*` headers.
#[derive(Debug, Clone)]
pub struct Forwarding<'a> {
    /// The TCP peer.
    pub peer: Option<IpAddr>,
    /// Whether the peer is a configured trusted proxy (its `X-Forwarded-*` are kept).
    pub trusted: bool,
    /// `http` or `https`, as the browser used (from public_url unless a trusted proxy said).
    pub proto: &'a str,
    /// The Host the browser asked for.
    pub host: &'a str,
    /// The request id to send.
    pub request_id: &'a str,
}

/// The headers to send upstream: the client's, minus hop-by-hop headers, the client's
/// `Authorization`, every spelling of the identity headers and the gateway's own cookies; plus
/// `X-Forwarded-For/-Proto/-Host`, `X-Request-Id` and, with a session, the bearer token and
/// identity headers. (Websocket handshakes are rebuilt by the websocket client.)
pub fn upstream_request_headers(
    incoming: &HeaderMap,
    is_ours: impl Fn(&str) -> bool,
    fwd: &Forwarding<'_>,
    session: Option<&SessionRecord>,
) -> HeaderMap {
    let tokens = connection_tokens(incoming);
    let mut out = HeaderMap::with_capacity(incoming.len() + 8);
    for (name, value) in incoming.iter() {
        if is_hop_by_hop(name, &tokens) || is_reserved(name.as_str()) || name == "host" {
            continue;
        }
        if name == "cookie" {
            if let Some(kept) = strip_cookies(value, &is_ours) {
                out.append(name.clone(), kept);
            }
            continue;
        }
        out.append(name.clone(), value.clone());
    }

    let prior_xff = fwd
        .trusted
        .then(|| joined(incoming, "x-forwarded-for"))
        .flatten();
    let peer = fwd.peer.map(|p| p.to_string()).unwrap_or_default();
    let xff = match prior_xff {
        Some(prior) if !peer.is_empty() => format!("{prior}, {peer}"),
        Some(prior) => prior,
        None => peer,
    };
    set(&mut out, "x-forwarded-for", &xff);
    set(&mut out, "x-forwarded-proto", fwd.proto);
    set(&mut out, "x-forwarded-host", fwd.host);
    set(&mut out, "x-request-id", fwd.request_id);

    if let Some(s) = session {
        if let Some((bearer, _)) = s.token_headers() {
            out.insert(actix_web::http::header::AUTHORIZATION, bearer.clone());
        }
        set(&mut out, "x-forwarded-user", &s.sub);
        if !s.user.email.is_empty() {
            set(&mut out, "x-forwarded-email", &s.user.email);
        }
        let preferred = if s.user.username.is_empty() {
            &s.user.name
        } else {
            &s.user.username
        };
        if !preferred.is_empty() {
            set(&mut out, "x-forwarded-preferred-username", preferred);
        }
        if !s.user.groups.is_empty() {
            set(&mut out, "x-forwarded-groups", &s.user.groups.join(","));
        }
        set(&mut out, "x-cloudbase-scope", &s.scope);
    }
    out
}

/// The upstream's response headers minus hop-by-hop ones and minus any `Set-Cookie` for the
/// gateway's own cookies (an upstream must not be able to plant or clear a session): a name
/// that is ours in any case, and any cookie without a name, which a browser stores with its
/// whole text as the value and sends back as `=cbgw_session=…`, or as a bare `cbgw_session=…`
/// in a `Cookie` header that servers read as ours.
pub fn downstream_response_headers(
    upstream: &HeaderMap,
    is_ours: impl Fn(&str) -> bool,
) -> HeaderMap {
    let tokens = connection_tokens(upstream);
    let mut out = HeaderMap::with_capacity(upstream.len());
    for (name, value) in upstream.iter() {
        if is_hop_by_hop(name, &tokens) {
            continue;
        }
        if name == actix_web::http::header::SET_COOKIE {
            let pair = value
                .to_str()
                .ok()
                .and_then(|v| v.split(';').next())
                .unwrap_or_default();
            let cookie_name = match pair.split_once('=') {
                Some((n, _)) => n.trim(),
                // No `=`: the browser takes the text as a nameless cookie's value.
                None => "",
            };
            if cookie_name.is_empty() || is_ours(cookie_name) {
                continue;
            }
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// A trusted header's values joined with `, ` (several lines are one list).
pub fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let parts: Vec<&str> = headers
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Sets `name` to `value` when it is a valid header value (UTF-8 names are sent as bytes;
/// control characters make the value unusable and it is left out).
fn set(out: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
        out.insert(HeaderName::from_static(name), v);
    }
}

/// The `Cookie` header without the gateway's cookies; `None` when nothing is left.
fn strip_cookies(value: &HeaderValue, is_ours: &impl Fn(&str) -> bool) -> Option<HeaderValue> {
    let text = value.to_str().ok()?;
    let kept: Vec<&str> = text
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default().trim();
            !is_ours(name)
        })
        .collect();
    if kept.is_empty() {
        None
    } else {
        HeaderValue::from_str(&kept.join("; ")).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_identity_headers_is_reserved() {
        for name in [
            "X-Forwarded-User",
            "x_forwarded_user",
            "X_FORWARDED_EMAIL",
            "x-Forwarded_Groups",
            "X-Auth-Request-User",
            "x_auth_request_access_token",
            "Authorization",
            "X-CloudBase-Scope",
            "x_cloudbase_scope",
        ] {
            assert!(is_reserved(name), "{name}");
        }
        assert!(!is_reserved("x-forwarded-userx"));
        assert!(!is_reserved("accept"));
    }

    #[test]
    fn hygiene_strips_and_injects() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer forged"),
            ("x_forwarded_user", "admin"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("cookie", "a=1; cbgw_session=abc; b=2"),
            ("cookie", "cbgw_session_csrf=x"),
            ("x-forwarded-for", "6.6.6.6"),
            ("accept", "text/html"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let fwd = Forwarding {
            peer: Some("127.0.0.1".parse().unwrap()),
            trusted: false,
            proto: "https",
            host: "app.example.com",
            request_id: "rid",
        };
        let ours = |n: &str| n == "cbgw_session" || n == "cbgw_session_csrf";
        let out = upstream_request_headers(&h, ours, &fwd, None);
        assert!(out.get("authorization").is_none());
        assert!(out.get("x_forwarded_user").is_none());
        assert!(out.get("x-secret").is_none());
        assert!(out.get("connection").is_none());
        assert_eq!(out.get_all("cookie").count(), 1);
        assert_eq!(out.get("cookie").unwrap(), "a=1; b=2");
        assert_eq!(out.get("x-forwarded-for").unwrap(), "127.0.0.1");
        assert_eq!(out.get("accept").unwrap(), "text/html");
        let trusted = Forwarding {
            trusted: true,
            ..fwd
        };
        let out = upstream_request_headers(&h, ours, &trusted, None);
        assert_eq!(out.get("x-forwarded-for").unwrap(), "6.6.6.6, 127.0.0.1");
    }
}
