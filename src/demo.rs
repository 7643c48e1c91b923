//! `cloudbase-gateway demo`: the emulator, a "whoami" upstream and the gateway in one process,
//! on 127.0.0.1, with demo users. Also the whoami upstream itself, which answers every path with
//! what it received: JSON `{method, path, query, headers}` for `Accept: application/json`,
//! otherwise an HTML page showing the signed-in user and the headers (tokens shortened).

use std::net::TcpListener;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use askama::Template;

use crate::emulator::SeedUser;

/// The demo users when `--users` is not given. Demo data only: these passwords are public.
pub fn default_users() -> Vec<SeedUser> {
    let user = |name: &str, display: &str, n: u8, groups: &[&str]| SeedUser {
        username: Some(name.to_string()),
        email: Some(format!("{name}@example.com")),
        phone_number: Some(format!("+86 1380000000{n}")),
        password: Some(format!("{name}-password-1")),
        name: Some(display.to_string()),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        status: None,
    };
    vec![
        user("alice", "Alice", 1, &["staff"]),
        user("bob", "Bob", 2, &["staff", "admin"]),
    ]
}

#[derive(Template)]
#[template(path = "gateway/whoami.html")]
struct WhoamiPage<'a> {
    user: &'a str,
    method: &'a str,
    path: &'a str,
    headers: Vec<(String, String)>,
}

/// Shortens a credential so the page shows its shape, not its value.
fn shorten(name: &str, value: &str) -> String {
    let sensitive = matches!(
        name,
        "authorization" | "cookie" | "x-forwarded-access-token"
    );
    if !sensitive || value.len() <= 24 {
        return value.to_string();
    }
    let head: String = value.chars().take(16).collect();
    format!("{head}… ({} characters)", value.chars().count())
}

async fn whoami(req: HttpRequest) -> HttpResponse {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let wants_json = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        let mut map = serde_json::Map::new();
        for (k, v) in &headers {
            match map.get_mut(k) {
                Some(serde_json::Value::String(prev)) => {
                    prev.push_str(", ");
                    prev.push_str(v);
                }
                _ => {
                    map.insert(k.clone(), serde_json::Value::String(v.clone()));
                }
            }
        }
        return HttpResponse::Ok().json(serde_json::json!({
            "method": req.method().as_str(),
            "path": req.path(),
            "query": req.query_string(),
            "headers": map,
        }));
    }
    let find = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let user = [
        find("x-forwarded-preferred-username"),
        find("x-forwarded-email"),
        find("x-forwarded-user"),
    ]
    .into_iter()
    .find(|s| !s.is_empty())
    .unwrap_or_default();
    let mut shown: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.clone(), shorten(k, v)))
        .collect();
    shown.sort();
    let page = WhoamiPage {
        user: &user,
        method: req.method().as_str(),
        path: req.path(),
        headers: shown,
    };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page.render().unwrap_or_default())
}

/// The whoami upstream on `listener`; the server must be awaited or spawned.
///
/// Fails when the listener cannot be used.
pub fn whoami_server(listener: TcpListener) -> std::io::Result<actix_web::dev::Server> {
    Ok(
        HttpServer::new(|| App::new().default_service(web::to(whoami)))
            .workers(1)
            .disable_signals()
            .listen(listener)?
            .run(),
    )
}
