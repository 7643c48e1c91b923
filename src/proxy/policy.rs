//! Route policies: which route a request belongs to and who may pass it. Rules see the
//! normalised path ([`normalize_path`]), so `/admin/../admin`, `%2e%2e`, `//admin`, `;`
//! parameters and encoded slashes cannot walk around them; and a rule guards every reading an
//! upstream might give a path (as sent, or case-folded as Express, ASP.NET Core and IIS route),
//! the strictest decision winning.

use percent_encoding::percent_decode;

use crate::config::{Policy, RouteSpec};
use crate::session::SessionRecord;

/// The path the rules see: percent-decoded once, `;` parameters dropped from every segment,
/// `\` treated as `/`, empty and `.` segments dropped, `..` resolved (never above the root).
/// Keeps a trailing slash. `None` for a path that does not decode to UTF-8 or holds a NUL.
pub fn normalize_path(raw: &str) -> Option<String> {
    // The query and fragment never take part (actix hands us the path alone, but be sure).
    let raw = raw.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_decode(raw.as_bytes()).decode_utf8().ok()?;
    if decoded.contains('\0') {
        return None;
    }
    let unified = decoded.replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    let trailing = unified.ends_with('/') || unified.ends_with("/.") || unified.ends_with("/..");
    for seg in unified.split('/') {
        // `/admin;jsessionid=x` and `/..;/admin` (Tomcat-style parameters) lose the parameter.
        let seg = seg.split(';').next().unwrap_or_default();
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(unified.len() + 1);
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if path.is_empty() || trailing {
        path.push('/');
    }
    Some(path)
}

/// Whether `raw` has a `.` or `..` segment in any reading: as sent, or percent-decoded once or
/// twice, with `/` or `\\` as separators and `;` parameters dropped.
pub fn has_dot_segment(raw: &str) -> bool {
    let raw = raw.split(['?', '#']).next().unwrap_or_default();
    let mut form = std::borrow::Cow::Borrowed(raw);
    for _ in 0..3 {
        if form
            .split(['/', '\\'])
            .map(|seg| seg.split(';').next().unwrap_or_default())
            .any(|seg| seg == "." || seg == "..")
        {
            return true;
        }
        if !form.contains('%') {
            break;
        }
        form = std::borrow::Cow::Owned(
            percent_decode(form.as_bytes())
                .decode_utf8_lossy()
                .into_owned(),
        );
    }
    false
}

/// The compiled route table.
#[derive(Debug, Clone)]
pub struct Routes {
    routes: Vec<RouteSpec>,
    labels: Vec<std::sync::Arc<str>>,
    /// Each route's path prefix, case-folded, for the case-folded reading of a path.
    folded: Vec<String>,
}

/// What the policy says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let it through.
    Allow,
    /// A session is needed and there is none.
    SignIn,
    /// Signed in, but the policy refuses this user.
    Forbidden,
}

impl Routes {
    /// Routes in the configured order.
    pub fn new(routes: Vec<RouteSpec>) -> Routes {
        let labels = routes
            .iter()
            .map(|r| format!("{}{}", r.host.as_deref().unwrap_or(""), r.path).into())
            .collect();
        let folded = routes
            .iter()
            .map(|r| fold(&r.path).unwrap_or_else(|| r.path.clone()))
            .collect();
        Routes {
            routes,
            labels,
            folded,
        }
    }

    /// The metrics label of route `index` (host and path prefix), made once.
    pub fn label(&self, index: usize) -> &std::sync::Arc<str> {
        &self.labels[index]
    }

    /// The route for `host` (no port, any case) and the normalised `path`: a route naming the
    /// host beats one that does not, then the longest prefix wins (on segment boundaries).
    pub fn find(&self, host: &str, path: &str) -> Option<(usize, &RouteSpec)> {
        self.best(host, |i| prefix_matches(&self.routes[i].path, path))
    }

    /// Like [`find`](Self::find), for a case-folded `path` matched against the case-folded
    /// prefixes.
    fn find_folded(&self, host: &str, folded_path: &str) -> Option<(usize, &RouteSpec)> {
        self.best(host, |i| prefix_matches(&self.folded[i], folded_path))
    }

    fn best(&self, host: &str, matches: impl Fn(usize) -> bool) -> Option<(usize, &RouteSpec)> {
        let host = host.to_ascii_lowercase();
        self.routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.host.as_deref().is_none_or(|h| h == host))
            .filter(|(i, _)| matches(*i))
            .max_by_key(|(i, r)| {
                (
                    r.host.is_some(),
                    r.path.trim_end_matches('/').len(),
                    usize::MAX - i,
                )
            })
    }

    /// The decision for a request, taking the strictest over every reading of its path an
    /// upstream might use: the normalised path; the path exactly as sent (an upstream that does
    /// not decode `%2F` or resolve `..;` sees that, so `/admin/x%2F..%2F..%2Fpublic` must pass
    /// `/admin`'s policy as well as `/public`'s); and both of them case-folded (Express, ASP.NET
    /// Core and IIS route `/ADMIN` to `/admin`'s handlers). Returns the normalised path's route
    /// (which also picks the upstream), or `None` when no route matches.
    pub fn check(
        &self,
        host: &str,
        raw_path: &str,
        normalized: &str,
        session: Option<&SessionRecord>,
    ) -> Option<(usize, Decision)> {
        let (index, route) = self.find(host, normalized)?;
        let decision = decide(&route.policy, session);
        if decision != Decision::Allow {
            return Some((index, decision));
        }
        let raw = raw_path.split(['?', '#']).next().unwrap_or_default();
        let readings = [
            self.find(host, raw),
            fold(normalized).and_then(|p| self.find_folded(host, &p)),
            fold(raw).and_then(|p| self.find_folded(host, &p)),
        ];
        for (other, other_route) in readings.into_iter().flatten() {
            if other != index {
                let d = decide(&other_route.policy, session);
                if d != Decision::Allow {
                    return Some((index, d));
                }
            }
        }
        Some((index, Decision::Allow))
    }

    /// The route at `index` (as returned by [`find`](Self::find)).
    pub fn get(&self, index: usize) -> &RouteSpec {
        &self.routes[index]
    }
}

/// `path` as a case-insensitive upstream reads it, or `None` when that changes nothing (the
/// common, all-lower-case path costs no allocation): case-folded both ways (upper then lower,
/// so that `ı` and `ſ`, which .NET and Windows read as `I` and `S`, fold too), and each
/// segment without trailing dots and spaces, which Windows and IIS drop (`/admin./x`,
/// `/admin%20/x`).
fn fold(path: &str) -> Option<String> {
    let plain = path.is_ascii()
        && !path.bytes().any(|b| b.is_ascii_uppercase())
        && !path.split('/').any(|s| s.ends_with(['.', ' ']));
    if plain {
        return None;
    }
    let trimmed: Vec<&str> = path
        .split('/')
        .map(|s| s.trim_end_matches(['.', ' ']))
        .collect();
    let folded = trimmed.join("/").to_uppercase().to_lowercase();
    (folded != path).then_some(folded)
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Applies `policy` to the session (if any).
pub fn decide(policy: &Policy, session: Option<&SessionRecord>) -> Decision {
    match (policy, session) {
        (Policy::Public, _) => Decision::Allow,
        (_, None) => Decision::SignIn,
        (Policy::Authenticated, Some(_)) => Decision::Allow,
        (Policy::Registered, Some(s)) if !s.is_anonymous() => Decision::Allow,
        (Policy::Groups(groups), Some(s))
            if !s.is_anonymous() && s.user.groups.iter().any(|g| groups.contains(g)) =>
        {
            Decision::Allow
        }
        _ => Decision::Forbidden,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_once() {
        for (raw, want) in [
            ("/", "/"),
            ("", "/"),
            ("/admin/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public%2f..%2fadmin", "/admin"),
            ("//admin", "/admin"),
            ("/admin;x=1/", "/admin/"),
            ("/public/..;/admin", "/admin"),
            ("/a/./b//c/", "/a/b/c/"),
            ("/../../etc", "/etc"),
            ("/public\\..\\admin", "/admin"),
            ("/%252e%252e/admin", "/%2e%2e/admin"),
            ("/a/..", "/"),
            ("/x?y=/admin", "/x"),
        ] {
            assert_eq!(normalize_path(raw).as_deref(), Some(want), "{raw}");
        }
        assert_eq!(normalize_path("/%ff"), None);
        assert_eq!(normalize_path("/a%00b"), None);
    }

    fn route(host: Option<&str>, path: &str, policy: Policy) -> RouteSpec {
        RouteSpec {
            host: host.map(str::to_string),
            path: path.into(),
            upstream: url::Url::parse("http://u").unwrap(),
            policy,
            anonymous_auto_sign_in: false,
        }
    }

    #[test]
    fn the_most_specific_route_wins() {
        let routes = Routes::new(vec![
            route(None, "/", Policy::Authenticated),
            route(None, "/public", Policy::Public),
            route(None, "/public/private/", Policy::Registered),
            route(
                Some("admin.example.com"),
                "/",
                Policy::Groups(vec!["admins".into()]),
            ),
        ]);
        let idx = |h: &str, p: &str| routes.find(h, p).map(|(i, _)| i);
        assert_eq!(idx("app.example.com", "/"), Some(0));
        assert_eq!(idx("app.example.com", "/public"), Some(1));
        assert_eq!(idx("app.example.com", "/public/x"), Some(1));
        assert_eq!(idx("app.example.com", "/publicity"), Some(0));
        assert_eq!(idx("app.example.com", "/public/private"), Some(2));
        assert_eq!(idx("ADMIN.example.com", "/public"), Some(3));
    }

    #[test]
    fn dot_segments_are_found_in_every_reading() {
        for raw in [
            "/../internal",
            "/a/../../x",
            "/%2e%2e/x",
            "/%2E%2e/x",
            "/%252e%252e/x",
            "/a/..;/x",
            "/a\\..\\x",
            "/a%2f..%2fx",
            "/./x",
            "/a/.",
        ] {
            assert!(has_dot_segment(raw), "{raw}");
        }
        for raw in [
            "/",
            "/a/b",
            "/a..b/",
            "/.well-known/x",
            "/x?y=/../z",
            "/...",
            "/a.b",
        ] {
            assert!(!has_dot_segment(raw), "{raw}");
        }
    }

    #[test]
    fn case_folded_paths_get_the_stricter_policy() {
        let routes = Routes::new(vec![
            route(None, "/", Policy::Public),
            route(None, "/admin", Policy::Groups(vec!["admins".into()])),
            route(None, "/api", Policy::Registered),
            route(None, "/Docs", Policy::Public),
        ]);
        let d = |raw: &str| {
            let n = normalize_path(raw).unwrap();
            routes.check("h", raw, &n, None).map(|(_, d)| d)
        };
        for raw in [
            "/ADMIN/users",
            "/Admin",
            "/%41DMIN/users",
            "/API/data",
            "/x/../ADMIN",
            "/ADMIN/x%2F..%2F..%2Fdocs",
            "/adm%C4%B1n/users",
            "/admin./users",
            "/admin%20/users",
            "/Admin. /users",
            "/api%2E/data",
        ] {
            assert_eq!(d(raw), Some(Decision::SignIn), "{raw}");
        }
        assert_eq!(d("/admins"), Some(Decision::Allow));
        assert_eq!(
            d("/ADMIN%2F..%2Fdocs"),
            Some(Decision::Allow),
            "one segment to an upstream that keeps %2F"
        );
        assert_eq!(
            d("/docs/x"),
            Some(Decision::Allow),
            "a public folded reading"
        );
        assert_eq!(fold("/plain/path"), None);
        assert_eq!(fold("/ǅ").as_deref(), Some("/ǆ"));
        assert_eq!(fold("/ſecret").as_deref(), Some("/secret"));
        assert_eq!(fold("/a./b ").as_deref(), Some("/a/b"));
    }

    #[test]
    fn policies_decide() {
        let mut s = SessionRecord {
            access_token: crate::secret::Secret::new("t"),
            refresh_token: None,
            expires_at: 0,
            refresh_expires_at: 0,
            scope: "user".into(),
            sub: "u".into(),
            user: Default::default(),
            device_id: String::new(),
            created_at: 0,
            last_seen: 0,
            version: 0,
            headers: Default::default(),
        };
        let admins = Policy::Groups(vec!["admins".into()]);
        assert_eq!(decide(&Policy::Public, None), Decision::Allow);
        assert_eq!(decide(&Policy::Authenticated, None), Decision::SignIn);
        assert_eq!(decide(&Policy::Registered, Some(&s)), Decision::Allow);
        assert_eq!(decide(&admins, Some(&s)), Decision::Forbidden);
        s.user.groups = vec!["admins".into()];
        assert_eq!(decide(&admins, Some(&s)), Decision::Allow);
        s.scope = "anonymous".into();
        assert_eq!(decide(&Policy::Authenticated, Some(&s)), Decision::Allow);
        assert_eq!(decide(&Policy::Registered, Some(&s)), Decision::Forbidden);
        assert_eq!(decide(&admins, Some(&s)), Decision::Forbidden);
    }
}
