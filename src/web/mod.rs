//! The web layer: thin actix-web handlers over the session manager, the proxy and the flows.
//! [`Gateway`] is the state every worker shares; [`Worker`] holds what each actix worker thread
//! owns (the `awc` clients, which cannot cross threads). [`routes`] registers everything.

pub mod account;
pub mod auth;
pub mod body;
pub mod captcha;
pub mod forms;
pub mod forward_auth;
pub mod login;
pub mod pages;
pub mod provider;
pub mod routes;

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpMessage, HttpRequest};

use crate::clock::SharedClock;
use crate::cloudbase::client::CloudBaseClient;
use crate::config::{Config, IpNet};
use crate::entropy::SharedEntropy;
use crate::flow::redirect::ReturnUrls;
use crate::flow::store::FlowStore;
use crate::flows::Pending;
use crate::i18n::Lang;
use crate::metrics::Metrics;
use crate::proxy::policy::Routes;
use crate::ratelimit::RateLimits;
use crate::session::manager::{FreshError, Loaded, SessionManager};
use pages::Brand;

/// The path prefix of the gateway's own endpoints.
pub const PREFIX: &str = "/__auth";

/// Whether the normalised `path` is one of the gateway's own (under [`PREFIX`], in any case).
pub fn is_own_path(path: &str) -> bool {
    path.get(..PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
        && matches!(path.as_bytes().get(PREFIX.len()), None | Some(b'/'))
}

/// State shared by every worker.
pub struct Gateway {
    /// The validated configuration.
    pub config: Config,
    /// Sessions.
    pub sessions: SessionManager,
    /// Route table.
    pub routes: Routes,
    /// The return-URL validator.
    pub return_urls: ReturnUrls,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Injected time.
    pub clock: SharedClock,
    /// Injected randomness.
    pub entropy: SharedEntropy,
    /// Branding for pages.
    pub brand: Arc<Brand>,
    /// Flows in progress.
    pub flows: FlowStore<Pending>,
    /// Sign-in rate limits.
    pub limits: RateLimits,
    /// Which sign-in names belong to one account.
    pub accounts: crate::ratelimit::Accounts,
    /// Sealed states of the redirect flows.
    pub states: crate::flow::state::States,
    /// Solved captcha tokens per browser.
    pub captcha_tokens: crate::flows::captcha::TokenCache,
    /// The hosts served: `public_url`'s, the routes' and `allowed_hosts`.
    pub hosts: crate::hosts::HostRules,
}

/// What one worker thread owns.
pub struct Worker {
    /// The CloudBase client.
    pub cloudbase: CloudBaseClient,
    /// The upstream client (pooled connections).
    pub http: awc::Client,
    /// An upstream client that never reuses a connection, for the one retry of a request whose
    /// pooled connection was closed under it.
    pub http_fresh: awc::Client,
}

/// Facts about one request the handlers need, computed once.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The TCP peer's address.
    pub peer: Option<IpAddr>,
    /// Whether the peer is a trusted proxy.
    pub trusted: bool,
    /// The request id (the client's when well-formed, else a new one).
    pub request_id: String,
    /// Whether the request is a browser navigation (gets pages and redirects, not JSON).
    pub navigation: bool,
    /// The host the browser asked for, lower case, without port.
    pub host: String,
    /// The Host header as sent (with port), for building URLs back to it.
    pub authority: String,
    /// `http` or `https` as the browser used.
    pub proto: String,
    /// The client's address: the peer's, or from `X-Forwarded-For` when the peer is a trusted
    /// proxy.
    pub client_ip: Option<IpAddr>,
    /// The page language (navigations only; the default otherwise).
    pub lang: Lang,
    /// Branding for pages.
    pub brand: Arc<Brand>,
    /// Path and query (navigations only), for the language switch link of error pages.
    pub here: String,
}

/// The request id stored in request extensions by the middleware.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl Gateway {
    /// Whether `peer` is a configured trusted proxy.
    pub fn is_trusted(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|ip| {
            self.config
                .trusted_proxies
                .iter()
                .any(|n: &IpNet| n.contains(ip))
        })
    }

    /// Why `req` names no host this gateway serves, if it does not: two `Host` headers, an
    /// absolute-form target naming another host than its `Host`, or a host other than
    /// `public_url`'s, the routes' and `allowed_hosts` (any host with
    /// `insecure_allow_any_host`). An app that builds links from the host it is told must never
    /// be told a host the gateway does not own. A request without any host (HTTP/1.0) is
    /// answered as `public_url`'s.
    pub fn host_refusal(&self, req: &HttpRequest) -> Option<crate::error::GatewayError> {
        use crate::error::GatewayError;
        let mut hosts = req.headers().get_all(header::HOST);
        let host = hosts.next();
        if hosts.next().is_some() {
            return Some(GatewayError::BadRequest(
                "The request has more than one Host header.",
            ));
        }
        let host = host.map(|v| match v.to_str() {
            Ok(a) if plain_authority(a) => Ok(host_without_port(a)),
            _ => Err(()),
        });
        let target = match req.uri().authority() {
            Some(a) if plain_authority(a.as_str()) => Some(host_without_port(a.as_str())),
            Some(_) => return Some(GatewayError::BadRequest("The request's host is not valid.")),
            None => None,
        };
        let host = match (host, target) {
            (Some(Err(())), _) => {
                return Some(GatewayError::BadRequest("The request's host is not valid."))
            }
            (Some(Ok(h)), Some(t)) if h != t => {
                return Some(GatewayError::BadRequest(
                    "The request names two different hosts.",
                ))
            }
            (Some(Ok(h)), _) => h,
            (None, Some(t)) => t,
            (None, None) => return None,
        };
        if self.config.insecure_allow_any_host || self.hosts.matches(&host) {
            None
        } else {
            Some(GatewayError::UnknownHost)
        }
    }

    /// The facts about `req`.
    pub fn incoming(&self, req: &HttpRequest) -> Incoming {
        let peer = req.peer_addr().map(|a| a.ip());
        let trusted = self.is_trusted(peer);
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(|| self.entropy.hex_id());
        let authority = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()))
            .unwrap_or_else(|| {
                self.config
                    .public_url
                    .host_str()
                    .unwrap_or_default()
                    .to_string()
            });
        let proto = trusted
            .then(|| first_value(req.headers(), "x-forwarded-proto"))
            .flatten()
            .filter(|p| p == "http" || p == "https")
            .unwrap_or_else(|| self.config.public_url.scheme().to_string());
        let navigation = is_navigation(req.headers());
        let client_ip = if trusted {
            forwarded_client(req.headers(), |ip| self.is_trusted(Some(ip))).or(peer)
        } else {
            peer
        };
        let (lang, here) = if navigation {
            (
                self.lang_of(req),
                req.uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into()),
            )
        } else {
            (self.config.login.default_language, String::new())
        };
        Incoming {
            peer,
            trusted,
            request_id,
            navigation,
            host: host_without_port(&authority),
            authority,
            proto,
            client_ip,
            lang,
            brand: self.brand.clone(),
            here,
        }
    }

    /// The page language for `req`: `?lang=`, the language cookie, `Accept-Language`, the
    /// configured default.
    pub fn lang_of(&self, req: &HttpRequest) -> Lang {
        let query = url::form_urlencoded::parse(req.query_string().as_bytes())
            .find(|(k, _)| k == "lang")
            .map(|(_, v)| v.into_owned());
        let cookie = req.cookie(self.sessions.cookies().lang_name());
        Lang::negotiate(
            query.as_deref(),
            cookie.as_ref().map(|c| c.value()),
            req.headers()
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
            self.config.login.default_language,
        )
    }

    /// The session behind the request's cookie, made fresh. `session` is `None` when there is
    /// none or it just ended; `set_cookie` is the cookie to send back: a deletion when the
    /// cookie named no live session, or the same handle with a renewed Max-Age after a refresh
    /// extended the session.
    pub async fn session(
        &self,
        req: &HttpRequest,
        worker: &Worker,
    ) -> Result<SessionLookup, crate::error::GatewayError> {
        let cookies = self.sessions.cookies();
        let cookie = req.cookie(cookies.session_name());
        let value = cookie.as_ref().map(|c| c.value().to_string());
        let loaded = self.sessions.load(value.as_deref()).await?;
        let Some(loaded) = loaded else {
            return Ok(SessionLookup {
                session: None,
                set_cookie: value.is_some().then(|| cookies.clear_session()),
            });
        };
        let before = loaded.record.refresh_expires_at;
        match self.sessions.fresh(&worker.cloudbase, loaded).await {
            Ok(l) => {
                self.sessions.touch(&l).await;
                // A refresh moved the session's end to now + session_ttl.
                let renewed = (l.record.refresh_expires_at > before)
                    .then(|| value.map(|v| cookies.session(v, self.config.session.ttl.as_secs())))
                    .flatten();
                Ok(SessionLookup {
                    session: Some(l),
                    set_cookie: renewed,
                })
            }
            Err(FreshError::Ended) => Ok(SessionLookup {
                session: None,
                set_cookie: Some(cookies.clear_session()),
            }),
            Err(FreshError::Unavailable) => Err(crate::error::GatewayError::CloudBaseUnavailable),
            Err(FreshError::Store(e)) => Err(e.into()),
        }
    }

    /// The sign-in page URL that returns to where `req` wanted to go.
    pub fn login_url(&self, req: &HttpRequest, inc: &Incoming) -> String {
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let ours = Some(inc.host.as_str()) == self.config.public_url.host_str();
        let back = if ours {
            pq.to_string()
        } else {
            format!("{}://{}{}", inc.proto, inc.authority, pq)
        };
        let encoded: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
        let base = self.config.public_url.as_str().trim_end_matches('/');
        if ours {
            format!("{PREFIX}/?rd={encoded}")
        } else {
            format!("{base}{PREFIX}/?rd={encoded}")
        }
    }
}

/// The outcome of looking up a request's session.
pub struct SessionLookup {
    /// The fresh session, if any.
    pub session: Option<Loaded>,
    /// A cookie to send back: a deletion, or a renewal after a refresh.
    pub set_cookie: Option<actix_web::cookie::Cookie<'static>>,
}

/// Whether `authority` is a bare `host` or `host:port` (a DNS name or IPv4 address, or an
/// `[IPv6]` literal): no user info, no second colon, nothing an app could turn into a link
/// to somewhere else (`good.example:443@evil.example`).
pub fn plain_authority(authority: &str) -> bool {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty()
            || !v6
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return false;
        }
        let port = match after {
            "" => None,
            a => match a.strip_prefix(':') {
                Some(p) => Some(p),
                None => return false,
            },
        };
        ("v6", port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// `host:port` or `[v6]:port` → the host, lower case.
pub fn host_without_port(authority: &str) -> String {
    let host = if authority.starts_with('[') {
        authority
            .split_once(']')
            .map(|(h, _)| format!("{h}]"))
            .unwrap_or_else(|| authority.to_string())
    } else {
        authority.split(':').next().unwrap_or_default().to_string()
    };
    // `admin.example.com.` is the same host as `admin.example.com`: match routes on one form.
    host.strip_suffix('.').unwrap_or(&host).to_ascii_lowercase()
}

/// The client address in `X-Forwarded-For` as our trusted proxies saw it: reading from the
/// right, the first address that is not itself a trusted proxy (entries further left are the
/// client's own claims and are never parsed). `ip:port` and `[v6]:port` entries are read too.
/// `None` when the header is missing or that entry is not an address.
fn forwarded_client(headers: &HeaderMap, trusted: impl Fn(IpAddr) -> bool) -> Option<IpAddr> {
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    let mut last = None;
    for entry in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        let ip = parse_forwarded_ip(entry.trim())?;
        last = Some(ip);
        if !trusted(ip) {
            return Some(ip);
        }
    }
    last
}

fn parse_forwarded_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.rsplit_once(':')?.0.parse().ok()
}

/// Whether the caller asks for JSON rather than a page (`Accept` lists JSON and not HTML).
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

fn first_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_ascii_lowercase())
}

/// A navigation: `Sec-Fetch-Mode: navigate`, or (without Fetch metadata) an `Accept` that
/// prefers HTML to JSON. Fetch and XHR calls, even when they accept HTML, are not navigations.
pub fn is_navigation(headers: &HeaderMap) -> bool {
    if let Some(mode) = headers.get("sec-fetch-mode").and_then(|v| v.to_str().ok()) {
        return mode.eq_ignore_ascii_case("navigate");
    }
    if headers
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"xmlhttprequest"))
    {
        return false;
    }
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut html = 0.0f32;
    let mut other = 0.0f32;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "text/html" | "application/xhtml+xml" => html = html.max(q),
            "application/json" | "text/event-stream" => other = other.max(q),
            _ => {}
        }
    }
    html > 0.0 && html >= other
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn navigations_are_told_from_api_calls() {
        assert!(is_navigation(&h(&[("sec-fetch-mode", "navigate")])));
        assert!(!is_navigation(&h(&[
            ("sec-fetch-mode", "cors"),
            ("accept", "text/html")
        ])));
        assert!(is_navigation(&h(&[(
            "accept",
            "text/html,application/xhtml+xml,*/*;q=0.8"
        )])));
        assert!(!is_navigation(&h(&[("accept", "application/json")])));
        assert!(!is_navigation(&h(&[("accept", "*/*")])));
        assert!(!is_navigation(&h(&[])));
        assert!(!is_navigation(&h(&[(
            "accept",
            "application/json, text/html;q=0.5"
        )])));
        assert!(!is_navigation(&h(&[
            ("accept", "text/html"),
            ("x-requested-with", "XMLHttpRequest")
        ])));
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_forwarded_address() {
        let trusted = |ip: IpAddr| ip.to_string().starts_with("10.");
        let hm = h(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.2")]);
        assert_eq!(
            forwarded_client(&hm, trusted),
            Some("1.2.3.4".parse().unwrap())
        );
        assert_eq!(
            forwarded_client(&h(&[("x-forwarded-for", "junk")]), trusted),
            None
        );
        assert_eq!(forwarded_client(&h(&[]), trusted), None);
    }

    #[test]
    fn only_bare_hosts_and_ports_are_authorities() {
        for ok in [
            "app.example.com",
            "App.Example.com:4180",
            "127.0.0.1:80",
            "[::1]:8080",
            "[2001:db8::1]",
            "localhost",
            "admin.example.com.",
        ] {
            assert!(plain_authority(ok), "{ok}");
        }
        for bad in [
            "",
            "good.example:443@evil.example",
            "evil@good.example",
            "good.example:443:80",
            "good.example:http",
            "good.example:",
            "good example",
            "good.example/x",
            "[::1",
            "[::1]x",
            "[zz]:80",
            "good.example:123456",
        ] {
            assert!(!plain_authority(bad), "{bad}");
        }
    }

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(host_without_port("App.Example.com:4180"), "app.example.com");
        assert_eq!(host_without_port("[::1]:8080"), "[::1]");
        assert_eq!(host_without_port("localhost"), "localhost");
        assert_eq!(
            host_without_port("Admin.Example.com.:443"),
            "admin.example.com"
        );
    }
}
