//! The web test harness shared by the flow tests: the emulator, a whoami upstream and the
//! gateway on ephemeral ports, a small cookie-keeping browser, and a capture of the process's
//! logs (at trace) to search for secrets.

#![allow(dead_code)]

use crate::common;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cloudbase_gateway::clock::OffsetClock;
use cloudbase_gateway::emulator::EmulatorOptions;
use cloudbase_gateway::entropy::OsEntropy;
use cloudbase_gateway::server::{self, Deps};
use serde_json::Value;

// ----- log capture -----

#[derive(Clone)]
pub struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(buf.clone());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace,mio=info"))
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .try_init();
        buf
    })
}

/// Fails when any of `secrets` appears in the logs captured so far (each line without its
/// timestamp, whose digits could match a 6-digit code by chance).
pub fn assert_logs_clean(secrets: &[&str]) {
    let raw = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    let text: String = raw
        .lines()
        .map(|l| l.split_once(' ').map(|(_, rest)| rest).unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("signed in") || text.contains("request"),
        "logs were captured"
    );
    for s in secrets.iter().filter(|s| s.len() >= 6) {
        assert!(
            !text.contains(*s),
            "a secret ({}…) reached the logs",
            &s[..3]
        );
    }
    assert!(!text.contains("eyJ"), "a JWT reached the logs");
}

// ----- the setup -----

pub struct Setup {
    pub env: common::Env,
    pub url: String,
    pub clock: Arc<OffsetClock>,
    pub gateway: actix_web::web::Data<cloudbase_gateway::web::Gateway>,
    /// The configuration file's text (a replica starts from the same).
    pub text: String,
    /// Stops this gateway's server.
    pub handle: actix_web::dev::ServerHandle,
}

/// Another gateway with the same configuration (a replica behind the same load balancer, or
/// the same gateway after a restart), on its own port.
pub struct Replica {
    pub url: String,
    pub clock: Arc<OffsetClock>,
    pub gateway: actix_web::web::Data<cloudbase_gateway::web::Gateway>,
    pub handle: actix_web::dev::ServerHandle,
}

/// Starts a gateway from configuration `text` on `listener`.
fn run(text: &str, listener: TcpListener) -> Replica {
    let addr = listener.local_addr().unwrap();
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    let cfg = cloudbase_gateway::config::load(Some(f.path()), Vec::<(String, String)>::new(), [])
        .unwrap_or_else(|e| panic!("{e}"));
    let clock = Arc::new(OffsetClock::default());
    let running = server::build_with(
        cfg,
        listener,
        None,
        Deps {
            clock: clock.clone(),
            entropy: Arc::new(OsEntropy),
            workers: 1,
        },
    )
    .unwrap();
    let handle = running.server.handle();
    actix_web::rt::spawn(running.server);
    Replica {
        url: format!("http://{addr}"),
        clock,
        gateway: running.gateway,
        handle,
    }
}

pub fn spawn_upstream() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    actix_web::rt::spawn(cloudbase_gateway::demo::whoami_server(l).unwrap());
    url
}

pub async fn start(extra: &str) -> Setup {
    start_with(EmulatorOptions::new("test-env"), extra).await
}

pub async fn start_with(mut opts: EmulatorOptions, extra: &str) -> Setup {
    logs();
    if opts.users.is_empty() {
        opts.users = common::default_users();
    }
    let env = common::start_with(opts, Duration::from_secs(2));
    let upstream = spawn_upstream();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let methods = if extra.contains("sign_in_methods") {
        ""
    } else {
        "sign_in_methods = [\"password\", \"email_code\", \"sms_code\", \"anonymous\", \"ticket\"]\n"
    };
    // `extra` may set its own public URL (then it also decides insecure_cookie).
    let origin = if extra.contains("public_url") {
        String::new()
    } else {
        format!("public_url = \"http://{addr}\"\ninsecure_cookie = true\n")
    };
    let text = format!(
        "env_id = \"test-env\"\n{origin}api_origin = \"{}\"\nupstream = \"{upstream}\"\ncloudbase_timeout = \"2s\"\n{methods}{extra}\n",
        env.emu.url
    );
    let r = run(&text, listener);
    Setup {
        env,
        url: r.url,
        clock: r.clock,
        gateway: r.gateway,
        text,
        handle: r.handle,
    }
}

impl Setup {
    /// Another gateway with this one's configuration, on its own port.
    pub fn replica(&self) -> Replica {
        run(&self.text, TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// A browser signed in with a password.
    pub async fn signed_in(&self, user: &str, password: &str) -> Browser {
        let b = self.browser();
        let page = b.password_sign_in(user, password, "/").await;
        assert_eq!(page.status, 302, "{}", page.body);
        assert!(b.session().is_some());
        b
    }

    /// A browser signed in as a guest.
    pub async fn guest(&self) -> Browser {
        let b = self.browser();
        b.get("/__auth/").await;
        let page = b.post("/__auth/sign_in/anonymous", &[("rd", "/")]).await;
        assert_eq!(page.status, 302, "{}", page.body);
        b
    }

    pub fn browser(&self) -> Browser {
        browser(&self.url)
    }

    /// The access and refresh tokens behind the browser's session (the opaque refresh token is
    /// what a log search for `eyJ` would miss).
    pub async fn tokens(&self, b: &Browser) -> Vec<String> {
        let loaded = self
            .gateway
            .sessions
            .load(b.session().as_deref())
            .await
            .unwrap()
            .expect("a session");
        let mut out = vec![loaded.record.access_token.expose().to_string()];
        if let Some(rt) = &loaded.record.refresh_token {
            out.push(rt.expose().to_string());
        }
        assert!(out.len() == 2, "the emulator issues refresh tokens");
        out
    }

    /// Every verification id the emulator issued (they travel only between the gateway and
    /// CloudBase).
    pub async fn verification_ids(&self) -> Vec<String> {
        self.env
            .get_json("/__emulator/outbox")
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["verification_id"].as_str().unwrap().to_string())
            .collect()
    }

    /// How many calls to `path` the emulator received.
    pub async fn calls(&self, path: &str) -> usize {
        self.env.requests_to(path).await.len()
    }

    pub async fn user(&self, login: &str) -> Value {
        let users = self.env.get_json("/__emulator/users").await;
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == login || u["email"] == login || u["phone_number"] == login)
            .cloned()
            .unwrap_or(Value::Null)
    }
}

/// A new browser talking to `base`.
pub fn browser(base: &str) -> Browser {
    Browser {
        base: base.to_string(),
        http: awc::Client::builder()
            .disable_redirects()
            .timeout(Duration::from_secs(10))
            .finish(),
        jar: RefCell::new(BTreeMap::new()),
        csrf: RefCell::new(String::new()),
        lang: RefCell::new(None),
    }
}

/// A browser: keeps cookies, sends navigation headers, remembers the page's CSRF token.
pub struct Browser {
    pub base: String,
    pub http: awc::Client,
    pub jar: RefCell<BTreeMap<String, String>>,
    pub csrf: RefCell<String>,
    pub lang: RefCell<Option<&'static str>>,
}

#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: String,
    pub headers: awc::http::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn has(&self, text: &str) -> bool {
        self.body.contains(text)
    }

    /// The value of the hidden or text input `name`.
    pub fn field(&self, name: &str) -> String {
        self.body
            .split(&format!("name=\"{name}\""))
            .nth(1)
            .and_then(|rest| rest.split("value=\"").nth(1))
            .and_then(|v| v.split('"').next())
            .unwrap_or_default()
            .to_string()
    }
}

impl Browser {
    /// The same browser (cookies, CSRF token) talking to another address: the load balancer
    /// sent it to another replica.
    pub fn on(&self, base: &str) -> Browser {
        Browser {
            base: base.to_string(),
            http: self.http.clone(),
            jar: RefCell::new(self.jar.borrow().clone()),
            csrf: RefCell::new(self.csrf.borrow().clone()),
            lang: RefCell::new(*self.lang.borrow()),
        }
    }

    pub fn cookie_header(&self) -> String {
        self.jar
            .borrow()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.borrow().get(name).cloned()
    }

    pub fn session(&self) -> Option<String> {
        self.cookie("cbgw_session")
    }

    pub async fn send(&self, req: awc::ClientRequest, form: Option<Vec<(String, String)>>) -> Page {
        let mut req = req
            .insert_header(("sec-fetch-mode", "navigate"))
            .insert_header(("accept", "text/html,application/xhtml+xml,*/*;q=0.8"));
        if let Some(l) = *self.lang.borrow() {
            req = req.insert_header(("accept-language", l));
        }
        let cookies = self.cookie_header();
        if !cookies.is_empty() {
            req = req.insert_header(("cookie", cookies));
        }
        let mut resp = match form {
            Some(f) => req.send_form(&f).await.unwrap(),
            None => req.send().await.unwrap(),
        };
        for sc in resp.headers().get_all("set-cookie") {
            let sc = sc.to_str().unwrap();
            let (pair, attrs) = sc.split_once(';').unwrap_or((sc, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") || value.is_empty() {
                self.jar.borrow_mut().remove(name);
            } else {
                self.jar
                    .borrow_mut()
                    .insert(name.to_string(), value.to_string());
            }
        }
        let body = String::from_utf8_lossy(&resp.body().limit(1 << 20).await.unwrap()).into_owned();
        let page = Page {
            status: resp.status().as_u16(),
            location: resp
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
            headers: resp.headers().clone(),
            body,
        };
        let token = page.field("csrf");
        if !token.is_empty() {
            *self.csrf.borrow_mut() = token;
        }
        page
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        self.send(self.http.get(self.url(path)), None).await
    }

    /// Posts a form with this browser's CSRF token (from the last page that had one).
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut f: Vec<(String, String)> = vec![("csrf".into(), self.csrf.borrow().clone())];
        f.extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.send(self.http.post(self.url(path)), Some(f)).await
    }

    /// Posts a form exactly as given (no CSRF token added).
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let f = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.send(self.http.post(self.url(path)), Some(f)).await
    }

    /// Follows a redirect chain from `page` (at most 5 hops).
    pub async fn follow(&self, mut page: Page) -> Page {
        for _ in 0..5 {
            if page.status != 302 {
                break;
            }
            let to = page.location.clone();
            page = self.get(&to).await;
        }
        page
    }

    /// `/__auth/userinfo` as JSON (`Null` with no session).
    pub async fn userinfo(&self) -> Value {
        let mut resp = self
            .http
            .get(self.url("/__auth/userinfo"))
            .insert_header(("accept", "application/json"))
            .insert_header(("cookie", self.cookie_header()))
            .send()
            .await
            .unwrap();
        if resp.status() != 200 {
            return Value::Null;
        }
        resp.json::<Value>().await.unwrap()
    }

    /// What the whoami upstream saw for `path` (JSON), and the bearer it got.
    pub async fn upstream(&self, path: &str) -> (u16, Value) {
        let mut resp = self
            .http
            .get(self.url(path))
            .insert_header(("accept", "application/json"))
            .insert_header(("cookie", self.cookie_header()))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    }

    /// Signs in with a password from the login page; the page after.
    pub async fn password_sign_in(&self, username: &str, password: &str, rd: &str) -> Page {
        self.get(&format!("/__auth/?rd={rd}")).await;
        self.post(
            "/__auth/sign_in/password",
            &[("rd", rd), ("username", username), ("password", password)],
        )
        .await
    }
}

pub fn flow_of(location: &str) -> String {
    location
        .split("flow=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string()
}

pub async fn send_code(b: &Browser, tab: &str, field: &str, value: &str, rd: &str) -> Page {
    b.get(&format!("/__auth/?method={tab}&rd={rd}")).await;
    b.post(
        &format!("/__auth/sign_in/{tab}"),
        &[("rd", rd), (field, value)],
    )
    .await
}

// ----- custom-login tickets -----

/// An RSA key pair for tickets and a second, unrelated private key (PKCS#8 PEMs): `(private,
/// public, other_private)`.
pub fn ticket_keys() -> (String, String, String) {
    use rand::SeedableRng;
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let key = |seed: u64| {
        rsa::RsaPrivateKey::new(&mut rand::rngs::StdRng::seed_from_u64(seed), 2048).unwrap()
    };
    let k = key(7);
    (
        k.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        rsa::RsaPublicKey::from(&k)
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
        key(8).to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
    )
}

/// A ticket for `dev-user-42` signed with `private` for `env`, issued at `now_ms` (tickets
/// sign in once: give each use its own `now_ms`).
pub fn make_ticket(private: &str, env: &str, now_ms: u64) -> String {
    use cloudbase_gateway::secret::Secret;
    use cloudbase_gateway::ticket::{create_ticket, KeyFile};
    let key = KeyFile {
        private_key_id: "key-1".into(),
        private_key: Secret::new(private),
        env_id: Some(env.into()),
    };
    create_ticket(&key, "dev-user-42", now_ms, None, None).unwrap()
}

// ----- the emulator's consent page -----

/// The query of `url`.
pub fn query(url: &str) -> BTreeMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// A URL-encoded query value.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The person's decision on the emulator's consent page `consent_url`; the redirect back.
pub async fn consent(b: &Browser, consent_url: &str, decision: &str) -> Page {
    let q = query(consent_url);
    let page = b.get(consent_url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let base = consent_url.split('?').next().unwrap();
    b.post_raw(
        base,
        &[
            ("provider_id", q["provider_id"].as_str()),
            ("redirect_uri", q["redirect_uri"].as_str()),
            ("state", q["state"].as_str()),
            ("login", "octocat"),
            ("decision", decision),
        ],
    )
    .await
}

// ----- a recording upstream -----

/// What a recording upstream saw: `{method, path, query, headers}` per request.
#[derive(Clone, Default)]
pub struct Seen(Arc<Mutex<Vec<Value>>>);

impl Seen {
    /// Every request as `METHOD path?query`.
    pub fn all(&self) -> Vec<String> {
        self.records()
            .iter()
            .map(|r| {
                format!(
                    "{} {}?{}",
                    r["method"].as_str().unwrap_or_default(),
                    r["path"].as_str().unwrap_or_default(),
                    r["query"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }

    /// Every request, headers included (names lower case).
    pub fn records(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }

    /// Whether some request line contains `needle` (case-folded).
    pub fn any(&self, needle: &str) -> bool {
        self.all()
            .iter()
            .any(|l| l.to_ascii_lowercase().contains(needle))
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// An upstream that records each request and answers `{path, query, headers}` as JSON. With
/// `fold`, it reads paths case-insensitively (as Express 4, ASP.NET Core and IIS route), and
/// answers the lower-cased path.
pub fn spawn_recording(fold: bool) -> (String, Seen) {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let seen = Seen::default();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let log = seen.clone();
    let server = HttpServer::new(move || {
        let log = log.clone();
        App::new().default_service(web::to(move |req: HttpRequest| {
            let log = log.clone();
            async move {
                let headers: serde_json::Map<String, Value> = req
                    .headers()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_string(),
                            Value::String(v.to_str().unwrap_or("").to_string()),
                        )
                    })
                    .collect();
                let record = serde_json::json!({
                    "method": req.method().as_str(),
                    "path": req.uri().path(),
                    "query": req.query_string(),
                    "headers": headers,
                });
                log.0.lock().unwrap().push(record.clone());
                let raw = req.uri().path().to_string();
                let path = if fold { raw.to_lowercase() } else { raw };
                HttpResponse::Ok().json(serde_json::json!({
                    "path": path,
                    "query": req.query_string(),
                    "headers": record["headers"],
                }))
            }
        }))
    })
    .workers(1)
    .disable_signals()
    .listen(l)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    (url, seen)
}
