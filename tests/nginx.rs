//! Forward-auth behind a real nginx (Debian's binary, which `scripts/test.sh` installs): the
//! README's `auth_request` recipe and the two risky variants seen in the wild (NGINX's own
//! guide, which sets only `X-Original-URI`; and `Host $host` without `X-Forwarded-Host`). A
//! browser's forged `X-Forwarded-*` and `X-Original-*` headers never open a protected path,
//! and signed-in requests still pass with the bearer token.

mod common;
mod harness;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::start;

/// nginx in the foreground with its own prefix, stopped (SIGTERM, then waited for) on drop.
struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: nginx's fast shutdown, which also ends its workers.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

fn nginx_binary() -> &'static str {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if std::path::Path::new(p).exists() {
            return p;
        }
    }
    panic!("nginx is not installed: scripts/test.sh installs it (apt-get install nginx-light)");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts nginx with `auth` as the body of `location = /__auth/auth`, protecting `app` and
/// passing `/__auth/` to the gateway at `gateway`.
fn nginx(gateway: &str, app: &str, auth: &str) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let p = dir.path().display();
    let conf = format!(
        r#"worker_processes 1;
error_log {p}/error.log info;
pid {p}/nginx.pid;
events {{ worker_connections 128; }}
http {{
    access_log off;
    client_body_temp_path {p}/body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    server {{
        listen 127.0.0.1:{port};
        absolute_redirect off;
        location = /__auth/auth {{
            internal;
            proxy_pass {gateway};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
{auth}
        }}
        location /__auth/ {{
            proxy_pass {gateway};
            proxy_set_header Host $host;
        }}
        location / {{
            auth_request /__auth/auth;
            auth_request_set $user $upstream_http_x_auth_request_user;
            auth_request_set $auth $upstream_http_authorization;
            proxy_set_header X-Forwarded-User $user;
            proxy_set_header Authorization $auth;
            error_page 401 = @signin;
            proxy_pass {app};
        }}
        location @signin {{ return 302 /__auth/?rd=$request_uri; }}
    }}
}}
"#
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let child = Command::new(nginx_binary())
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .arg("-g")
        .arg("daemon off;")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx starts");
    let n = Nginx { child, port, dir };
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: {}",
            n.error_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    n
}

/// One request to nginx, blocking, off the runtime: the status and the `Location`. `Host` is
/// nginx's own address unless `headers` name one.
async fn get(port: u16, path: &str, headers: &[(&str, String)]) -> (u16, String) {
    let mut head = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    actix_web::rt::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let location = out
            .lines()
            .find_map(|l| l.strip_prefix("Location: "))
            .unwrap_or_default()
            .to_string();
        (status, location)
    })
    .await
    .unwrap()
}

/// The session cookie header of a signed-in browser.
fn cookie_of(b: &harness::Browser) -> String {
    format!("cbgw_session={}", b.session().unwrap())
}

/// The README's recipe, Authelia's (the browser's raw `$http_host` in the URL) and the two
/// risky variants.
const RECIPES: [(&str, &str); 4] = [
    (
        "the README's recipe",
        "            proxy_set_header Host $host;\n            proxy_set_header X-Original-URL $scheme://$host$request_uri;",
    ),
    (
        "Authelia's recipe ($http_host)",
        "            proxy_set_header Host $host;\n            proxy_set_header X-Original-URL $scheme://$http_host$request_uri;",
    ),
    (
        "NGINX's guide (X-Original-URI only)",
        "            proxy_set_header X-Original-URI $request_uri;",
    ),
    (
        "Host $host without X-Forwarded-Host",
        "            proxy_set_header Host $host;\n            proxy_set_header X-Forwarded-Uri $request_uri;",
    ),
];

#[actix_web::test]
async fn nginx_auth_request_recipes_hold_against_forged_headers() {
    let s = start(
        "trusted_proxies = [\"127.0.0.1\"]\n\
         [[routes]]\nhost = \"open.example.com\"\npath = \"/\"\npolicy = \"public\"\n\
         [[routes]]\npath = \"/public\"\npolicy = \"public\"\n\
         [[routes]]\npath = \"/admin\"\ngroups = [\"staff\"]\n",
    )
    .await;
    let alice = cookie_of(&s.signed_in("alice", "alice-pass-1").await);
    let guest = cookie_of(&s.guest().await);
    let (app, seen) = harness::spawn_recording(false);
    for (name, recipe) in RECIPES {
        let n = nginx(&s.url, &app, recipe);
        seen.clear();
        let port = n.port;
        let forged: Vec<Vec<(&str, String)>> = vec![
            vec![("X-Forwarded-Uri", "/public".into())],
            vec![("X-Original-URI", "/public".into())],
            vec![("X-Original-URL", format!("http://127.0.0.1:{port}/public"))],
            vec![("X-Forwarded-Host", "open.example.com".into())],
            vec![("X-Original-URL", "http://open.example.com/admin".into())],
            vec![
                ("X-Forwarded-Uri", "/public".into()),
                ("X-Forwarded-Host", "open.example.com".into()),
            ],
            vec![
                ("X-Forwarded-Uri", "/admin/x".into()),
                ("X-Forwarded-Uri", "/public".into()),
            ],
            // A raw Host that would end the URL's authority early in `$http_host`.
            vec![("Host", "127.0.0.1:1#".into())],
            vec![("Host", "127.0.0.1:1?".into())],
            vec![
                ("Host", "127.0.0.1:1#".into()),
                ("X-Forwarded-Uri", "/public".into()),
            ],
        ];
        for cookie in [None, Some(guest.clone())] {
            for path in ["/admin/secret", "/ADMIN/secret", "/%61dmin/secret"] {
                for headers in &forged {
                    let mut h = headers.clone();
                    if let Some(c) = &cookie {
                        h.push(("Cookie", c.clone()));
                    }
                    let (status, location) = get(port, path, &h).await;
                    // 302 to sign in (the gateway said 401), 403, or 500 (the gateway said
                    // 400 about the forged headers, which nginx reports as its own error), or
                    // nginx's own 400 for a Host it will not take.
                    assert!(
                        matches!(status, 302 | 400 | 403 | 500),
                        "{name}: {path} {headers:?} (a guest cookie: {}) got {status}",
                        cookie.is_some()
                    );
                    if status == 302 {
                        assert!(location.starts_with("/__auth/?rd="), "{location}");
                    }
                }
            }
        }
        assert!(
            seen.all().is_empty(),
            "{name}: the app saw {:?}",
            seen.all()
        );
        let log = n.error_log();
        assert!(
            !log.contains("unexpected status: 202"),
            "{name}: nginx logged {log}"
        );

        // Legitimate requests pass, with the bearer and the user.
        let (status, _) = get(port, "/public/page", &[]).await;
        assert_eq!(status, 200, "{name}: a public page");
        let (status, location) = get(port, "/admin/secret", &[]).await;
        assert_eq!(status, 302, "{name}: sign in first");
        assert_eq!(location, "/__auth/?rd=/admin/secret");
        let (status, _) = get(port, "/admin/secret", &[("Cookie", guest.clone())]).await;
        assert_eq!(status, 403, "{name}: a guest is not staff");
        let (status, _) = get(port, "/admin/secret?x=1", &[("Cookie", alice.clone())]).await;
        assert_eq!(status, 200, "{name}: alice is staff");
        let (status, _) = get(port, "/__auth/", &[]).await;
        assert_eq!(status, 200, "{name}: the sign-in page through nginx");
        let seen_now = seen.records();
        let admin = seen_now
            .iter()
            .find(|r| r["path"] == "/admin/secret" && r["query"] == "x=1")
            .unwrap_or_else(|| panic!("{name}: {:?}", seen.all()));
        assert!(
            admin["headers"]["authorization"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Bearer ey"),
            "{name}: {admin}"
        );
        assert!(!admin["headers"]["x-forwarded-user"]
            .as_str()
            .unwrap_or_default()
            .is_empty());
    }
}
