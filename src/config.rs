//! Configuration: defaults → TOML file → environment (`CLOUDBASE_GATEWAY_*`) → command-line
//! flags, validated once into [`Config`]. Every problem is collected and reported together,
//! naming the key, its environment variable and where the bad value came from. Unknown keys
//! are errors. Secrets are [`Secret`]s, so `Debug` and `check-config` never show them, and each
//! secret key has a `*_file` variant that reads the value from a file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::secret::Secret;

/// Prefix of every environment variable the gateway reads.
pub const ENV_PREFIX: &str = "CLOUDBASE_GATEWAY_";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the gateway listens on.
    pub listen: SocketAddr,
    /// The URL browsers use to reach the gateway; callbacks are built from it.
    pub public_url: Url,
    /// How to reach CloudBase.
    pub cloudbase: CloudBaseSettings,
    /// Logging.
    pub log: LogSettings,
    /// The session cookie.
    pub cookie: CookieSettings,
    /// Session lifetimes and the store's bound.
    pub session: SessionSettings,
    /// Limits and deadlines of the reverse proxy.
    pub proxy: ProxySettings,
    /// Routes, most specific first as written; the implicit catch-all (from `upstream`) last.
    pub routes: Vec<RouteSpec>,
    /// Hosts an absolute return URL may point at (`.example.com` = any subdomain).
    pub allowed_redirect_hosts: Vec<String>,
    /// Hosts served besides `public_url`'s and the routes' (`.example.com` = any subdomain).
    pub allowed_hosts: Vec<String>,
    /// `insecure_allow_any_host`: serve every `Host`, known or not.
    pub insecure_allow_any_host: bool,
    /// The forward-auth endpoint's trust rules.
    pub forward_auth: ForwardAuthSettings,
    /// Addresses whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Where `/metrics` is served; off when unset.
    pub metrics_listen: Option<SocketAddr>,
    /// The hosted login pages: methods, branding, language.
    pub login: LoginSettings,
    /// Rate limits of the sign-in flows.
    pub rate_limits: RateLimitSettings,
    /// Where sessions, flows, limits and the refresh lock live.
    pub store: StoreSettings,
}

/// Where the shared state lives (`session_store_type`).
#[derive(Debug, Clone)]
pub enum StoreSettings {
    /// In this process (the default): one replica, sessions end with the process.
    Memory,
    /// In Redis, shared by every replica and kept across restarts.
    Redis(Box<RedisSettings>),
}

/// A Redis URL; `Debug` hides its password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(pub Url);

impl RedisUrl {
    /// The URL with its password replaced by `[redacted]`, for logs and `check-config`.
    pub fn redacted(&self) -> String {
        let mut u = self.0.clone();
        if u.password().is_some() {
            let _ = u.set_password(Some("[redacted]"));
        }
        u.to_string().replace("%5Bredacted%5D", "[redacted]")
    }

    /// The database index in the path (`/2`), 0 when there is none.
    pub fn db(&self) -> i64 {
        self.0.path().trim_start_matches('/').parse().unwrap_or(0)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// How the servers are laid out.
#[derive(Debug, Clone)]
pub enum RedisTopology {
    /// One server (`redis_connection_url`).
    Standalone(RedisUrl),
    /// A master found through sentinels.
    Sentinel {
        /// `redis_sentinel_master_name`.
        master: String,
        /// `redis_sentinel_connection_urls`.
        sentinels: Vec<RedisUrl>,
        /// `redis_sentinel_password`: the sentinels' own password.
        password: Option<Secret>,
        /// The database index (from `redis_connection_url`, else the first sentinel URL).
        db: i64,
        /// Whether the master is reached over TLS (`rediss://` URLs).
        tls: bool,
        /// `redis_connection_url`, when given: the master's credentials and db index.
        master_url: Option<RedisUrl>,
    },
    /// A Redis Cluster (`redis_cluster_connection_urls`).
    Cluster(Vec<RedisUrl>),
}

/// The Redis store's settings.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// Which servers.
    pub topology: RedisTopology,
    /// `redis_username`, else the URL's.
    pub username: Option<String>,
    /// `redis_password`, else the URL's.
    pub password: Option<Secret>,
    /// `redis_ca_file`: PEM roots trusted for `rediss://` besides the system's.
    pub ca_file: Option<PathBuf>,
    /// `insecure_redis_skip_tls_verify`.
    pub insecure_skip_tls_verify: bool,
    /// `redis_key_prefix`.
    pub key_prefix: String,
    /// `redis_timeout`: the longest one store operation may take.
    pub timeout: Duration,
}

impl RedisSettings {
    /// Where the store is, without credentials (for the start-up log).
    pub fn location(&self) -> String {
        let host = |u: &RedisUrl| match u.0.scheme() {
            "unix" | "redis+unix" => u.0.path().to_string(),
            _ => format!(
                "{}://{}:{}",
                u.0.scheme(),
                u.0.host_str().unwrap_or(""),
                u.0.port().unwrap_or(6379)
            ),
        };
        match &self.topology {
            RedisTopology::Standalone(u) => format!("standalone {} db {}", host(u), u.db()),
            RedisTopology::Sentinel {
                master,
                sentinels,
                db,
                ..
            } => format!(
                "sentinel master {master} via {} db {db}",
                sentinels.iter().map(host).collect::<Vec<_>>().join(",")
            ),
            RedisTopology::Cluster(urls) => format!(
                "cluster {}",
                urls.iter().map(host).collect::<Vec<_>>().join(",")
            ),
        }
    }
}

/// A sign-in method of the hosted login page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInMethod {
    /// User name, e-mail or phone with a password.
    Password,
    /// A code sent by e-mail.
    EmailCode,
    /// A code sent by SMS.
    SmsCode,
    /// Anonymous (guest) sign-in.
    Anonymous,
    /// Custom-login tickets posted to `/__auth/ticket`.
    Ticket,
}

impl SignInMethod {
    /// The name used in `sign_in_methods`.
    pub fn name(self) -> &'static str {
        match self {
            SignInMethod::Password => "password",
            SignInMethod::EmailCode => "email_code",
            SignInMethod::SmsCode => "sms_code",
            SignInMethod::Anonymous => "anonymous",
            SignInMethod::Ticket => "ticket",
        }
    }

    fn parse(s: &str) -> Result<SignInMethod, String> {
        Ok(match s {
            "password" => SignInMethod::Password,
            "email_code" => SignInMethod::EmailCode,
            "sms_code" => SignInMethod::SmsCode,
            "anonymous" => SignInMethod::Anonymous,
            "ticket" => SignInMethod::Ticket,
            _ => {
                return Err(format!(
                    "{s:?}: expected password, email_code, sms_code, anonymous or ticket"
                ))
            }
        })
    }
}

/// The hosted login pages.
#[derive(Debug, Clone)]
pub struct LoginSettings {
    /// Enabled methods, in the order the page shows them.
    pub methods: Vec<SignInMethod>,
    /// Whether the page offers sign-up (needs a code method).
    pub sign_up: bool,
    /// Product name shown on the pages.
    pub brand_name: String,
    /// Logo shown above the forms.
    pub brand_logo_url: Option<String>,
    /// Primary colour, `#rrggbb`.
    pub brand_color: String,
    /// Language when neither `?lang=`, the language cookie nor `Accept-Language` decide.
    pub default_language: crate::i18n::Lang,
    /// Third-party providers offered on the login and account pages, in order.
    pub providers: Vec<ProviderButton>,
    /// How captchas CloudBase asks for are shown.
    pub captcha_mode: crate::flows::captcha::Mode,
}

/// A provider button: the CloudBase provider id and the label shown (`None`: the built-in
/// label of `wx_open` and `wx_mp`, or the id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderButton {
    /// Provider id in the CloudBase environment.
    pub id: String,
    /// Button label.
    pub label: Option<String>,
}

impl LoginSettings {
    /// The configured provider `id`.
    pub fn provider(&self, id: &str) -> Option<&ProviderButton> {
        self.providers.iter().find(|p| p.id == id)
    }
}

impl LoginSettings {
    /// Whether `m` is enabled.
    pub fn has(&self, m: SignInMethod) -> bool {
        self.methods.contains(&m)
    }
}

/// `count` events per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed in the window.
    pub count: u32,
    /// The window.
    pub per: Duration,
}

/// What `/__auth/auth` does for a caller that is not in `trusted_proxies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UntrustedForwardAuth {
    /// Refuse with 403: only a trusted proxy can say which request it asks about.
    Deny,
    /// Check the policy of `/` on the caller's `Host` (deployments without path policies).
    RootPolicy,
}

/// The forward-auth endpoint's trust rules.
#[derive(Debug, Clone)]
pub struct ForwardAuthSettings {
    /// What an untrusted caller gets.
    pub without_trusted_proxy: UntrustedForwardAuth,
    /// Whether a trusted proxy gets `Authorization` and `X-Auth-Request-Access-Token`.
    pub pass_access_token: bool,
}

/// Rate limits of the sign-in flows (`None`: off).
#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    /// Codes sent to one phone or e-mail.
    pub code_per_target: Option<Rate>,
    /// Codes requested from one client IP.
    pub code_per_ip: Option<Rate>,
    /// Password attempts for one user name.
    pub password_per_user: Option<Rate>,
    /// Password attempts from one client IP.
    pub password_per_ip: Option<Rate>,
    /// Guest sign-ins from one client IP (the button and automatic guest sessions).
    pub anonymous_per_ip: Option<Rate>,
    /// Provider redirects started from one client IP.
    pub start_per_ip: Option<Rate>,
    /// Failed custom-ticket sign-ins from one client IP.
    pub ticket_per_ip: Option<Rate>,
    /// Captchas started from one client IP.
    pub captcha_per_ip: Option<Rate>,
}

/// The session cookie's name, scope and keyring.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    /// Base name; the `__Host-` or `__Secure-` prefix is added when the cookie is Secure.
    pub name: String,
    /// Domain for single sign-on across subdomains, e.g. `corp.example.com`.
    pub domain: Option<String>,
    /// MAC keyring: the first secret signs, every secret verifies. `None` means a random key
    /// per process (sessions do not survive a restart).
    pub secrets: Option<Vec<Secret>>,
    /// `insecure_cookie`: drop `Secure` (and the prefix) for plain-http development.
    pub insecure: bool,
}

/// Session lifetimes.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// The most sessions kept in memory.
    pub capacity: u64,
    /// The refresh token's life: how long a session lives without a refresh.
    pub ttl: Duration,
    /// Refresh when the access token has less than this left.
    pub refresh_margin: Duration,
}

/// Reverse-proxy limits.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Deadline from connecting to the upstream to its response head.
    pub timeout: Duration,
    /// Largest request body passed on, in bytes.
    pub max_body_size: u64,
    /// Largest total size of the request's header names and values, in bytes.
    pub max_header_size: usize,
    /// Send the client's `Host` upstream instead of the upstream URL's host.
    pub pass_host_header: bool,
    /// Deadline for a body the gateway reads itself (forms, tickets), and the longest pause
    /// between two pieces of a body passed upstream.
    pub client_body_timeout: Duration,
}

/// Who may pass a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Anyone, signed in or not.
    Public,
    /// Any session, anonymous included.
    Authenticated,
    /// Registered (not anonymous) users.
    Registered,
    /// Registered users in at least one of these groups.
    Groups(Vec<String>),
}

/// One route: where matching requests go and who may pass.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// Host to match (lower case, no port); any host when `None`.
    pub host: Option<String>,
    /// Path prefix, matched on segment boundaries; `/` matches everything.
    pub path: String,
    /// The upstream (origin plus an optional base path).
    pub upstream: Url,
    /// Who may pass.
    pub policy: Policy,
    /// Give a visitor without a session an anonymous CloudBase session.
    pub anonymous_auto_sign_in: bool,
}

/// An IP network (`10.0.0.0/8`) or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `ADDR` or `ADDR/PREFIX`.
    ///
    /// Fails when the address or prefix is malformed.
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("{s:?} has a bad prefix length")),
            },
        };
        Ok(IpNet { addr, prefix })
    }

    /// Whether `ip` is inside this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Where and how the gateway talks to CloudBase.
#[derive(Debug, Clone)]
pub struct CloudBaseSettings {
    /// The CloudBase environment id.
    pub env_id: String,
    /// The environment's region, e.g. `ap-shanghai`.
    pub region: String,
    /// OAuth client id; defaults to the env id, as the SDK does.
    pub client_id: String,
    /// OAuth client secret, used for Basic authentication where the SDK uses it.
    pub client_secret: Option<Secret>,
    /// Scheme, host and port of the auth API.
    pub api_origin: Url,
    /// Deadline for one CloudBase call, connect to last byte.
    pub timeout: Duration,
}

/// Log output.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter directive such as `info` or `cloudbase_gateway=debug,info`.
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// The configuration as TOML with every secret replaced by `[redacted]`, in the same flat
    /// keys the file takes, so the output (secrets aside) can be used as a configuration file.
    pub fn redacted_toml(&self) -> String {
        let mut t = toml::Table::new();
        let mut put = |k: &str, v: String| {
            t.insert(k.to_string(), toml::Value::String(v));
        };
        put("listen", self.listen.to_string());
        put(
            "public_url",
            self.public_url.as_str().trim_end_matches('/').to_string(),
        );
        put("env_id", self.cloudbase.env_id.clone());
        put("region", self.cloudbase.region.clone());
        put("client_id", self.cloudbase.client_id.clone());
        if let Some(secret) = &self.cloudbase.client_secret {
            put("client_secret", secret.to_string());
        }
        put(
            "api_origin",
            self.cloudbase
                .api_origin
                .as_str()
                .trim_end_matches('/')
                .to_string(),
        );
        put(
            "cloudbase_timeout",
            humantime::format_duration(self.cloudbase.timeout).to_string(),
        );
        put(
            "log_format",
            match self.log.format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            }
            .to_string(),
        );
        put("log_level", self.log.level.clone());
        put("cookie_name", self.cookie.name.clone());
        if let Some(domain) = &self.cookie.domain {
            put("cookie_domain", domain.clone());
        }
        if let Some(secrets) = &self.cookie.secrets {
            put(
                "cookie_secret",
                secrets
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        let dur = |d: Duration| humantime::format_duration(d).to_string();
        put("session_ttl", dur(self.session.ttl));
        put("refresh_margin", dur(self.session.refresh_margin));
        put("upstream_timeout", dur(self.proxy.timeout));
        put("client_body_timeout", dur(self.proxy.client_body_timeout));
        put(
            "forward_auth_without_trusted_proxy",
            match self.forward_auth.without_trusted_proxy {
                UntrustedForwardAuth::Deny => "deny",
                UntrustedForwardAuth::RootPolicy => "root_policy",
            }
            .to_string(),
        );
        if let Some(addr) = self.metrics_listen {
            put("metrics_listen", addr.to_string());
        }
        put("brand_name", self.login.brand_name.clone());
        if let Some(logo) = &self.login.brand_logo_url {
            put("brand_logo_url", logo.clone());
        }
        put("brand_color", self.login.brand_color.clone());
        put(
            "default_language",
            self.login.default_language.tag().to_string(),
        );
        put(
            "captcha_mode",
            match self.login.captcha_mode {
                crate::flows::captcha::Mode::Redirect => "redirect",
                crate::flows::captcha::Mode::Image => "image",
            }
            .to_string(),
        );
        let rate = |r: Option<Rate>| match r {
            Some(r) => format!("{}/{}", r.count, humantime::format_duration(r.per)),
            None => "off".to_string(),
        };
        let rl = &self.rate_limits;
        put("rate_limit_code_per_target", rate(rl.code_per_target));
        put("rate_limit_code_per_ip", rate(rl.code_per_ip));
        put("rate_limit_password_per_user", rate(rl.password_per_user));
        put("rate_limit_password_per_ip", rate(rl.password_per_ip));
        put("rate_limit_anonymous_per_ip", rate(rl.anonymous_per_ip));
        put("rate_limit_start_per_ip", rate(rl.start_per_ip));
        put("rate_limit_ticket_per_ip", rate(rl.ticket_per_ip));
        put("rate_limit_captcha_per_ip", rate(rl.captcha_per_ip));
        match &self.store {
            StoreSettings::Memory => put("session_store_type", "memory".into()),
            StoreSettings::Redis(r) => {
                put("session_store_type", "redis".into());
                let urls = |v: &[RedisUrl]| {
                    v.iter()
                        .map(RedisUrl::redacted)
                        .collect::<Vec<_>>()
                        .join(",")
                };
                match &r.topology {
                    RedisTopology::Standalone(u) => put("redis_connection_url", u.redacted()),
                    RedisTopology::Sentinel {
                        master,
                        sentinels,
                        password,
                        master_url,
                        ..
                    } => {
                        if let Some(u) = master_url {
                            put("redis_connection_url", u.redacted());
                        }
                        put("redis_use_sentinel", "true".into());
                        put("redis_sentinel_master_name", master.clone());
                        put("redis_sentinel_connection_urls", urls(sentinels));
                        if let Some(p) = password {
                            put("redis_sentinel_password", p.to_string());
                        }
                    }
                    RedisTopology::Cluster(v) => {
                        put("redis_use_cluster", "true".into());
                        put("redis_cluster_connection_urls", urls(v));
                    }
                }
                if let Some(u) = &r.username {
                    put("redis_username", u.clone());
                }
                if let Some(p) = &r.password {
                    put("redis_password", p.to_string());
                }
                if let Some(f) = &r.ca_file {
                    put("redis_ca_file", f.display().to_string());
                }
                if r.insecure_skip_tls_verify {
                    put("insecure_redis_skip_tls_verify", "true".into());
                }
                put("redis_key_prefix", r.key_prefix.clone());
                put(
                    "redis_timeout",
                    humantime::format_duration(r.timeout).to_string(),
                );
            }
        }
        let strings =
            |v: Vec<String>| toml::Value::Array(v.into_iter().map(toml::Value::String).collect());
        t.insert("insecure_cookie".into(), self.cookie.insecure.into());
        t.insert(
            "insecure_allow_any_host".into(),
            self.insecure_allow_any_host.into(),
        );
        t.insert(
            "forward_auth_pass_access_token".into(),
            self.forward_auth.pass_access_token.into(),
        );
        t.insert("sign_up".into(), self.login.sign_up.into());
        t.insert(
            "providers".into(),
            strings(
                self.login
                    .providers
                    .iter()
                    .map(|p| match &p.label {
                        Some(l) => format!("{}={l}", p.id),
                        None => p.id.clone(),
                    })
                    .collect(),
            ),
        );
        t.insert(
            "sign_in_methods".into(),
            strings(
                self.login
                    .methods
                    .iter()
                    .map(|m| m.name().to_string())
                    .collect(),
            ),
        );
        t.insert(
            "pass_host_header".into(),
            self.proxy.pass_host_header.into(),
        );
        t.insert(
            "session_capacity".into(),
            toml::Value::Integer(self.session.capacity as i64),
        );
        t.insert(
            "max_body_size".into(),
            toml::Value::Integer(self.proxy.max_body_size as i64),
        );
        t.insert(
            "max_header_size".into(),
            toml::Value::Integer(self.proxy.max_header_size as i64),
        );
        t.insert(
            "allowed_redirect_hosts".into(),
            strings(self.allowed_redirect_hosts.clone()),
        );
        t.insert("allowed_hosts".into(), strings(self.allowed_hosts.clone()));
        t.insert(
            "trusted_proxies".into(),
            strings(self.trusted_proxies.iter().map(|n| n.to_string()).collect()),
        );
        let routes = self
            .routes
            .iter()
            .map(|r| {
                let mut rt = toml::Table::new();
                if let Some(h) = &r.host {
                    rt.insert("host".into(), h.clone().into());
                }
                rt.insert("path".into(), r.path.clone().into());
                rt.insert("upstream".into(), r.upstream.to_string().into());
                match &r.policy {
                    Policy::Groups(g) => {
                        rt.insert("groups".into(), strings(g.clone()));
                    }
                    p => {
                        let name = match p {
                            Policy::Public => "public",
                            Policy::Registered => "registered",
                            _ => "authenticated",
                        };
                        rt.insert("policy".into(), name.into());
                    }
                }
                rt.insert(
                    "anonymous_auto_sign_in".into(),
                    r.anonymous_auto_sign_in.into(),
                );
                toml::Value::Table(rt)
            })
            .collect();
        t.insert("routes".into(), toml::Value::Array(routes));
        t.to_string()
    }
}

/// What kind of value a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Duration,
    Bool,
    Int,
    /// A TOML array of strings, or a comma-separated string in env and flags.
    List,
}

struct KeySpec {
    key: &'static str,
    kind: Kind,
    secret: bool,
}

const KEYS: &[KeySpec] = &[
    KeySpec {
        key: "listen",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "public_url",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "env_id",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "region",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "client_id",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "client_secret",
        kind: Kind::Str,
        secret: true,
    },
    KeySpec {
        key: "api_origin",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "cloudbase_timeout",
        kind: Kind::Duration,
        secret: false,
    },
    KeySpec {
        key: "log_format",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "log_level",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "upstream",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "routes",
        kind: Kind::List,
        secret: false,
    },
    KeySpec {
        key: "cookie_secret",
        kind: Kind::List,
        secret: true,
    },
    KeySpec {
        key: "cookie_name",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "cookie_domain",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "insecure_cookie",
        kind: Kind::Bool,
        secret: false,
    },
    KeySpec {
        key: "session_capacity",
        kind: Kind::Int,
        secret: false,
    },
    KeySpec {
        key: "session_ttl",
        kind: Kind::Duration,
        secret: false,
    },
    KeySpec {
        key: "refresh_margin",
        kind: Kind::Duration,
        secret: false,
    },
    KeySpec {
        key: "upstream_timeout",
        kind: Kind::Duration,
        secret: false,
    },
    KeySpec {
        key: "max_body_size",
        kind: Kind::Int,
        secret: false,
    },
    KeySpec {
        key: "max_header_size",
        kind: Kind::Int,
        secret: false,
    },
    KeySpec {
        key: "pass_host_header",
        kind: Kind::Bool,
        secret: false,
    },
    KeySpec {
        key: "allowed_redirect_hosts",
        kind: Kind::List,
        secret: false,
    },
    KeySpec {
        key: "trusted_proxies",
        kind: Kind::List,
        secret: false,
    },
    KeySpec {
        key: "metrics_listen",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "sign_in_methods",
        kind: Kind::List,
        secret: false,
    },
    KeySpec {
        key: "sign_up",
        kind: Kind::Bool,
        secret: false,
    },
    KeySpec {
        key: "brand_name",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "brand_logo_url",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "brand_color",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "default_language",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "providers",
        kind: Kind::List,
        secret: false,
    },
    KeySpec {
        key: "captcha_mode",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "rate_limit_code_per_target",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "rate_limit_code_per_ip",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "rate_limit_password_per_user",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "rate_limit_password_per_ip",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "rate_limit_anonymous_per_ip",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "rate_limit_start_per_ip",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "rate_limit_ticket_per_ip",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "rate_limit_captcha_per_ip",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "session_store_type",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "redis_connection_url",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "redis_username",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "redis_password",
        kind: Kind::Str,
        secret: true,
    },
    KeySpec {
        key: "redis_use_sentinel",
        kind: Kind::Bool,
        secret: false,
    },
    KeySpec {
        key: "redis_sentinel_master_name",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "redis_sentinel_connection_urls",
        kind: Kind::List,
        secret: false,
    },
    KeySpec {
        key: "redis_sentinel_password",
        kind: Kind::Str,
        secret: true,
    },
    KeySpec {
        key: "redis_use_cluster",
        kind: Kind::Bool,
        secret: false,
    },
    KeySpec {
        key: "redis_cluster_connection_urls",
        kind: Kind::List,
        secret: false,
    },
    KeySpec {
        key: "redis_ca_file",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "insecure_redis_skip_tls_verify",
        kind: Kind::Bool,
        secret: false,
    },
    KeySpec {
        key: "redis_key_prefix",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "redis_timeout",
        kind: Kind::Duration,
        secret: false,
    },
    KeySpec {
        key: "allowed_hosts",
        kind: Kind::List,
        secret: false,
    },
    KeySpec {
        key: "insecure_allow_any_host",
        kind: Kind::Bool,
        secret: false,
    },
    KeySpec {
        key: "forward_auth_without_trusted_proxy",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "forward_auth_pass_access_token",
        kind: Kind::Bool,
        secret: false,
    },
    KeySpec {
        key: "client_body_timeout",
        kind: Kind::Duration,
        secret: false,
    },
];

/// One `[[routes]]` table as written in the file.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    host: Option<String>,
    #[serde(default = "root_path")]
    path: String,
    upstream: Option<String>,
    policy: Option<String>,
    groups: Option<Vec<String>>,
    #[serde(default)]
    anonymous_auto_sign_in: bool,
}

fn root_path() -> String {
    "/".into()
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// The TOML file.
    File(PathBuf),
    /// An environment variable.
    Env,
    /// A command-line flag.
    Flag,
}

impl Source {
    /// Precedence: a higher rank overrides a lower one.
    fn rank(&self) -> u8 {
        match self {
            Source::Default => 0,
            Source::File(_) => 1,
            Source::Env => 2,
            Source::Flag => 3,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env => f.write_str("environment"),
            Source::Flag => f.write_str("flag"),
        }
    }
}

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key, e.g. `env_id`; empty for problems with the file as a whole.
    pub key: String,
    /// Where the offending value came from, when there was one.
    pub source: Option<Source>,
    /// What is wrong, never including a secret value.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            return f.write_str(&self.message);
        }
        write!(
            f,
            "{} ({}{})",
            self.key,
            ENV_PREFIX,
            self.key.to_ascii_uppercase()
        )?;
        if let Some(source) = &self.source {
            write!(f, " from {source}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found while loading the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration problem(s):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// Whether some problem concerns `key`.
    pub fn mentions(&self, key: &str) -> bool {
        self.0.iter().any(|p| p.key == key)
    }
}

#[derive(Debug, Clone)]
struct RawValue {
    value: String,
    source: Source,
}

struct Collector {
    values: BTreeMap<String, RawValue>,
    /// `[[routes]]` tables, only ever from the file.
    routes: Option<(Vec<RawRoute>, Source)>,
    problems: Vec<ConfigProblem>,
}

impl Collector {
    fn problem(&mut self, key: &str, source: Option<Source>, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            key: key.to_string(),
            source,
            message: message.into(),
        });
    }

    /// Records `value` for `key` when the key is known (a later source overrides an earlier
    /// one), or a problem when it is not.
    fn set(&mut self, key: &str, value: String, source: Source) {
        if key == "routes" {
            self.problem(
                key,
                Some(source),
                "routes are set only in the configuration file, as [[routes]] tables",
            );
        } else if known_key(key) {
            // `x` and `x_file` are one setting: a later source replaces either spelling from an
            // earlier one (both in the same source is reported by `secret`).
            if let Some(sibling) = secret_sibling(key) {
                if self
                    .values
                    .get(&sibling)
                    .is_some_and(|v| v.source.rank() < source.rank())
                {
                    self.values.remove(&sibling);
                }
            }
            self.values
                .insert(key.to_string(), RawValue { value, source });
        } else {
            let message = match &source {
                Source::Env => format!(
                    "unknown environment variable {ENV_PREFIX}{}",
                    key.to_ascii_uppercase()
                ),
                _ => "unknown key".to_string(),
            };
            self.problem(key, Some(source), message);
        }
    }

    fn take(&mut self, key: &str) -> Option<RawValue> {
        self.values.remove(key)
    }
}

/// For a secret key, its `_file` spelling, and the other way round.
fn secret_sibling(key: &str) -> Option<String> {
    KEYS.iter().filter(|k| k.secret).find_map(|k| {
        if key == k.key {
            Some(format!("{}_file", k.key))
        } else if key.strip_suffix("_file") == Some(k.key) {
            Some(k.key.to_string())
        } else {
            None
        }
    })
}

fn known_key(key: &str) -> bool {
    KEYS.iter()
        .any(|k| k.key == key || (k.secret && key.strip_suffix("_file") == Some(k.key)))
}

/// Loads and validates the configuration.
///
/// `env` is the process environment (only `CLOUDBASE_GATEWAY_*` variables are read); `flags`
/// are `(key, value)` pairs from the command line. Returns every problem at once when any
/// value is missing, unknown or invalid.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    flags: impl IntoIterator<Item = (&'static str, String)>,
) -> Result<Config, ConfigErrors> {
    let mut c = Collector {
        values: BTreeMap::new(),
        routes: None,
        problems: Vec::new(),
    };

    if let Some(path) = file {
        read_file(&mut c, path);
    }
    for (name, value) in env {
        if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
            c.set(&rest.to_ascii_lowercase(), value, Source::Env);
        }
    }
    for (key, value) in flags {
        c.set(key, value, Source::Flag);
    }

    validate(c)
}

fn read_file(c: &mut Collector, path: &Path) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            c.problem(
                "",
                None,
                format!("cannot read {}: {}", path.display(), e.kind()),
            );
            return;
        }
    };
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            // Only the message and position: the parser's snippet could quote a secret.
            let at = e
                .span()
                .map(|s| format!(" at line {}", text[..s.start].lines().count().max(1)))
                .unwrap_or_default();
            c.problem(
                "",
                None,
                format!("{} is not valid TOML{at}: {}", path.display(), e.message()),
            );
            return;
        }
    };
    let source = Source::File(path.to_path_buf());
    for (key, value) in table {
        if key == "routes" {
            match value.try_into::<Vec<RawRoute>>() {
                Ok(routes) => c.routes = Some((routes, source.clone())),
                Err(e) => c.problem(
                    &key,
                    Some(source.clone()),
                    format!(
                        "expected [[routes]] tables with host, path, upstream, policy, groups, anonymous_auto_sign_in: {}",
                        e.message()
                    ),
                ),
            }
            continue;
        }
        let is_list = KEYS.iter().any(|k| k.key == key && k.kind == Kind::List);
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) if is_list && items.iter().all(|v| v.is_str()) => items
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(","),
            _ if !known_key(&key) => {
                c.problem(&key, Some(source.clone()), "unknown key");
                continue;
            }
            _ => {
                c.problem(&key, Some(source.clone()), "expected a string or a number");
                continue;
            }
        };
        c.set(&key, text, source.clone());
    }
}

fn validate(mut c: Collector) -> Result<Config, ConfigErrors> {
    let listen = match c.take("listen") {
        None => Some("127.0.0.1:4180".parse().expect("default listen address")),
        Some(v) => parse_or(&mut c, "listen", v, |s| {
            s.parse::<SocketAddr>()
                .map_err(|_| "expected an address such as 127.0.0.1:4180 or 0.0.0.0:4180".into())
        }),
    };

    let public_url = match c.take("public_url") {
        None => {
            c.problem("public_url", None, "is required: the URL browsers use to reach the gateway, e.g. https://app.example.com");
            None
        }
        Some(v) => parse_or(&mut c, "public_url", v, |s| {
            let url = http_url(s)?;
            if url.query().is_some() || url.fragment().is_some() {
                return Err("must not have a query or fragment".into());
            }
            if url.path() != "/" {
                return Err("must not have a path: the gateway owns the whole origin".into());
            }
            Ok(url)
        }),
    };

    let env_id = match c.take("env_id") {
        None => {
            c.problem("env_id", None, "is required: the CloudBase environment id");
            None
        }
        Some(v) => parse_or(&mut c, "env_id", v, |s| ident(s, 64).map(str::to_string)),
    };

    let region = match c.take("region") {
        None => Some("ap-shanghai".to_string()),
        Some(v) => parse_or(&mut c, "region", v, |s| ident(s, 32).map(str::to_string)),
    };

    let client_id = match c.take("client_id") {
        None => env_id.clone(),
        Some(v) => parse_or(&mut c, "client_id", v, |s| {
            ident(s, 128).map(str::to_string)
        }),
    };

    let client_secret = secret(&mut c, "client_secret");

    let api_origin = match c.take("api_origin") {
        None => match (&env_id, &region) {
            (Some(env), Some(region)) => Url::parse(&format!(
                "https://{env}.{region}.tcb-api.tencentcloudapi.com"
            ))
            .ok(),
            _ => None,
        },
        Some(v) => parse_or(&mut c, "api_origin", v, |s| {
            let url = http_url(s)?;
            if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
                return Err("must be an origin only (scheme, host, port), e.g. https://env.ap-shanghai.tcb-api.tencentcloudapi.com".into());
            }
            Ok(url)
        }),
    };

    let timeout = duration(
        &mut c,
        "cloudbase_timeout",
        Duration::from_secs(10),
        Duration::from_secs(300),
    );

    let format = match c.take("log_format") {
        None => Some(LogFormat::Text),
        Some(v) => parse_or(&mut c, "log_format", v, |s| match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".into()),
        }),
    };

    let level = match c.take("log_level") {
        None => Some("info".to_string()),
        Some(v) => {
            parse_or(&mut c, "log_level", v, |s| {
                tracing_subscriber::EnvFilter::try_new(s)
                .map(|_| s.to_string())
                .map_err(|_| "expected a tracing filter such as info, debug or cloudbase_gateway=debug,warn".into())
            })
        }
    };

    let cookie = cookie_settings(&mut c, public_url.as_ref());
    let session = session_settings(&mut c);
    let proxy = proxy_settings(&mut c);
    let routes = routes(&mut c);
    let allowed_redirect_hosts = list(&mut c, "allowed_redirect_hosts", host_rule);
    let allowed_hosts = list(&mut c, "allowed_hosts", host_rule);
    let insecure_allow_any_host = match c.take("insecure_allow_any_host") {
        None => Some(false),
        Some(v) => parse_or(&mut c, "insecure_allow_any_host", v, parse_bool),
    };
    let forward_auth = forward_auth_settings(&mut c);
    let trusted_proxies = list(&mut c, "trusted_proxies", IpNet::parse);
    let metrics_listen = c.take("metrics_listen").and_then(|v| {
        parse_or(&mut c, "metrics_listen", v, |s| {
            s.parse::<SocketAddr>()
                .map_err(|_| "expected an address such as 127.0.0.1:9100".into())
        })
    });

    let login = login_settings(&mut c);
    let rate_limits = rate_limit_settings(&mut c);
    let store = store_settings(&mut c, cookie.as_ref().map(|k| k.secrets.is_some()));

    debug_assert!(c.values.is_empty(), "every known key is validated");

    match (
        listen, public_url, env_id, region, client_id, api_origin, timeout, format, level,
    ) {
        (
            Some(listen),
            Some(public_url),
            Some(env_id),
            Some(region),
            Some(client_id),
            Some(api_origin),
            Some(timeout),
            Some(format),
            Some(level),
        ) if c.problems.is_empty() => Ok(Config {
            listen,
            public_url,
            cookie: cookie.expect("no problems"),
            session: session.expect("no problems"),
            proxy: proxy.expect("no problems"),
            routes: routes.expect("no problems"),
            allowed_redirect_hosts: allowed_redirect_hosts.expect("no problems"),
            allowed_hosts: allowed_hosts.expect("no problems"),
            insecure_allow_any_host: insecure_allow_any_host.expect("no problems"),
            forward_auth: forward_auth.expect("no problems"),
            trusted_proxies: trusted_proxies.expect("no problems"),
            metrics_listen,
            login: login.expect("no problems"),
            rate_limits: rate_limits.expect("no problems"),
            store: store.expect("no problems"),
            cloudbase: CloudBaseSettings {
                env_id,
                region,
                client_id,
                client_secret,
                api_origin,
                timeout,
            },
            log: LogSettings { format, level },
        }),
        _ => Err(ConfigErrors(c.problems)),
    }
}

fn cookie_settings(c: &mut Collector, public_url: Option<&Url>) -> Option<CookieSettings> {
    let name = match c.take("cookie_name") {
        None => Some("cbgw_session".to_string()),
        Some(v) => parse_or(c, "cookie_name", v, |s| {
            if s.starts_with("__") {
                return Err("give the name without a __Host- or __Secure- prefix: it is added when the cookie is Secure".into());
            }
            ident(s, 64).map(str::to_string)
        }),
    };
    let domain = c.take("cookie_domain").and_then(|v| {
        parse_or(c, "cookie_domain", v, |s| {
            let d = s.trim_start_matches('.').to_ascii_lowercase();
            if d.is_empty()
                || !d.contains('.')
                || !d.split('.').all(|l| {
                    !l.is_empty() && l.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
                })
            {
                return Err("expected a domain such as corp.example.com".into());
            }
            Ok(d)
        })
    });
    let insecure = match c.take("insecure_cookie") {
        None => Some(false),
        Some(v) => parse_or(c, "insecure_cookie", v, parse_bool),
    };
    let secrets = match secret(c, "cookie_secret") {
        None => Some(None),
        Some(all) => {
            let keys: Vec<Secret> = all
                .expose()
                .split(',')
                .map(|s| Secret::new(s.trim()))
                .collect();
            if keys.iter().any(|k| k.expose().len() < 32) {
                c.problem(
                    "cookie_secret",
                    None,
                    "each comma-separated secret must be at least 32 characters (e.g. openssl rand -base64 32)",
                );
                None
            } else {
                Some(Some(keys))
            }
        }
    };
    if let (Some(false), Some(url)) = (insecure, public_url) {
        if url.scheme() == "http" {
            c.problem(
                "insecure_cookie",
                None,
                "public_url is plain http, where browsers drop Secure cookies: serve https, or set insecure_cookie = true for development",
            );
        }
    }
    if let (Some(domain), Some(url)) = (&domain, public_url) {
        let host = url.host_str().unwrap_or_default();
        if host != domain && !host.ends_with(&format!(".{domain}")) {
            c.problem(
                "cookie_domain",
                None,
                format!("public_url's host {host} is not inside {domain}"),
            );
        }
    }
    Some(CookieSettings {
        name: name?,
        domain,
        secrets: secrets?,
        insecure: insecure?,
    })
}

/// A `redis://`, `rediss://` or `unix://` URL.
fn redis_url(s: &str) -> Result<RedisUrl, String> {
    let hint =
        "expected redis://[user[:password]@]host:port[/db], rediss://… for TLS or unix:///path";
    let url = Url::parse(s).map_err(|_| hint.to_string())?;
    match url.scheme() {
        "redis" | "rediss" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(hint.into());
            }
        }
        "unix" | "redis+unix" => {
            if url.path().len() < 2 {
                return Err(hint.into());
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err("must not have a query or fragment; give the database, user and password with redis_username and redis_password".into());
            }
            return Ok(RedisUrl(url));
        }
        _ => return Err(hint.into()),
    }
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u16>().is_err() {
        return Err("the path must be a database index such as /0".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment; use insecure_redis_skip_tls_verify and redis_ca_file for TLS".into());
    }
    Ok(RedisUrl(url))
}

/// `session_store_type` and the `redis_*` keys. `has_cookie_secret` is `None` when the cookie
/// settings had problems of their own.
fn store_settings(c: &mut Collector, has_cookie_secret: Option<bool>) -> Option<StoreSettings> {
    let kind = match c.take("session_store_type") {
        None => Some(false),
        Some(v) => parse_or(c, "session_store_type", v, |s| match s {
            "memory" => Ok(false),
            "redis" => Ok(true),
            _ => Err("expected memory or redis".into()),
        }),
    };
    let url = c
        .take("redis_connection_url")
        .map(|v| parse_or(c, "redis_connection_url", v, redis_url));
    let username = c.take("redis_username").map(|v| v.value);
    let password = secret(c, "redis_password");
    let flag = |c: &mut Collector, key: &str| match c.take(key) {
        None => Some(false),
        Some(v) => parse_or(c, key, v, parse_bool),
    };
    let use_sentinel = flag(c, "redis_use_sentinel");
    let master = c.take("redis_sentinel_master_name").map(|v| v.value);
    let sentinels = list(c, "redis_sentinel_connection_urls", redis_url);
    let sentinel_password = secret(c, "redis_sentinel_password");
    let use_cluster = flag(c, "redis_use_cluster");
    let cluster = list(c, "redis_cluster_connection_urls", redis_url);
    let ca_file = c.take("redis_ca_file").and_then(|v| {
        parse_or(c, "redis_ca_file", v, |s| {
            let path = PathBuf::from(s);
            match std::fs::read(&path) {
                Ok(pem)
                    if String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") =>
                {
                    Ok(path)
                }
                Ok(_) => Err("is not a PEM certificate file".into()),
                Err(e) => Err(format!("cannot be read: {}", e.kind())),
            }
        })
    });
    let insecure_skip_tls_verify = flag(c, "insecure_redis_skip_tls_verify");
    let key_prefix = match c.take("redis_key_prefix") {
        None => Some("cbgw:".to_string()),
        Some(v) => parse_or(c, "redis_key_prefix", v, |s| {
            if s.len() > 64
                || s.contains(['{', '}'])
                || s.chars().any(|ch| ch.is_control() || ch == ' ')
            {
                Err("expected at most 64 characters without spaces or braces, e.g. cbgw:".into())
            } else {
                Ok(s.to_string())
            }
        }),
    };
    let timeout = duration(
        c,
        "redis_timeout",
        Duration::from_secs(2),
        Duration::from_secs(60),
    );

    let redis = kind?;
    if !redis {
        return Some(StoreSettings::Memory);
    }
    let (use_sentinel, use_cluster) = (use_sentinel?, use_cluster?);
    // A list that did not parse was reported already: go on to report the rest too.
    let (sentinels_parsed, cluster_parsed) = (sentinels.is_some(), cluster.is_some());
    let (sentinels, cluster) = (sentinels.unwrap_or_default(), cluster.unwrap_or_default());
    if has_cookie_secret == Some(false) {
        c.problem(
            "cookie_secret",
            None,
            "is required with session_store_type = \"redis\": replicas (and a restarted gateway) with different random secrets cannot read each other's cookies",
        );
    }
    let topology = if use_sentinel && use_cluster {
        c.problem(
            "redis_use_sentinel",
            None,
            "redis_use_sentinel and redis_use_cluster exclude each other",
        );
        None
    } else if use_sentinel {
        if master.as_deref().is_none_or(str::is_empty) {
            c.problem(
                "redis_sentinel_master_name",
                None,
                "is required with redis_use_sentinel: the name sentinel monitors the master by",
            );
        }
        if sentinels.is_empty() && sentinels_parsed {
            c.problem(
                "redis_sentinel_connection_urls",
                None,
                "is required with redis_use_sentinel, e.g. redis://10.0.0.1:26379,redis://10.0.0.2:26379",
            );
        }
        let url = url.clone().flatten();
        let db = url
            .as_ref()
            .or(sentinels.first())
            .map(RedisUrl::db)
            .unwrap_or(0);
        let tls = url
            .as_ref()
            .or(sentinels.first())
            .is_some_and(|u| u.0.scheme() == "rediss");
        Some(RedisTopology::Sentinel {
            master: master.unwrap_or_default(),
            sentinels,
            password: sentinel_password,
            db,
            tls,
            master_url: url,
        })
    } else if use_cluster {
        if cluster.is_empty() && cluster_parsed {
            c.problem(
                "redis_cluster_connection_urls",
                None,
                "is required with redis_use_cluster, e.g. redis://10.0.0.1:7000,redis://10.0.0.2:7000",
            );
        }
        Some(RedisTopology::Cluster(cluster))
    } else {
        match url {
            None => {
                c.problem(
                    "redis_connection_url",
                    None,
                    "is required with session_store_type = \"redis\", e.g. redis://127.0.0.1:6379/0",
                );
                None
            }
            Some(u) => u.map(RedisTopology::Standalone),
        }
    };
    Some(StoreSettings::Redis(Box::new(RedisSettings {
        topology: topology?,
        username,
        password,
        ca_file,
        insecure_skip_tls_verify: insecure_skip_tls_verify?,
        key_prefix: key_prefix?,
        timeout: timeout?,
    })))
}

fn session_settings(c: &mut Collector) -> Option<SessionSettings> {
    let capacity = int(c, "session_capacity", 100_000, 1, 100_000_000);
    let ttl = duration(
        c,
        "session_ttl",
        Duration::from_secs(30 * 24 * 3600),
        Duration::from_secs(400 * 24 * 3600),
    );
    let refresh_margin = duration(
        c,
        "refresh_margin",
        Duration::from_secs(300),
        Duration::from_secs(3600),
    );
    Some(SessionSettings {
        capacity: capacity?,
        ttl: ttl?,
        refresh_margin: refresh_margin?,
    })
}

fn proxy_settings(c: &mut Collector) -> Option<ProxySettings> {
    let timeout = duration(
        c,
        "upstream_timeout",
        Duration::from_secs(30),
        Duration::from_secs(3600),
    );
    let max_body_size = int(c, "max_body_size", 64 << 20, 0, 1 << 40);
    let max_header_size = int(c, "max_header_size", 16 << 10, 1024, 1 << 20);
    let pass_host_header = match c.take("pass_host_header") {
        None => Some(false),
        Some(v) => parse_or(c, "pass_host_header", v, parse_bool),
    };
    let client_body_timeout = duration(
        c,
        "client_body_timeout",
        Duration::from_secs(10),
        Duration::from_secs(3600),
    );
    Some(ProxySettings {
        timeout: timeout?,
        max_body_size: max_body_size?,
        max_header_size: max_header_size? as usize,
        pass_host_header: pass_host_header?,
        client_body_timeout: client_body_timeout?,
    })
}

fn forward_auth_settings(c: &mut Collector) -> Option<ForwardAuthSettings> {
    let without_trusted_proxy = match c.take("forward_auth_without_trusted_proxy") {
        None => Some(UntrustedForwardAuth::Deny),
        Some(v) => parse_or(c, "forward_auth_without_trusted_proxy", v, |s| match s {
            "deny" => Ok(UntrustedForwardAuth::Deny),
            "root_policy" => Ok(UntrustedForwardAuth::RootPolicy),
            _ => Err("expected deny or root_policy".into()),
        }),
    };
    let pass_access_token = match c.take("forward_auth_pass_access_token") {
        None => Some(true),
        Some(v) => parse_or(c, "forward_auth_pass_access_token", v, parse_bool),
    };
    Some(ForwardAuthSettings {
        without_trusted_proxy: without_trusted_proxy?,
        pass_access_token: pass_access_token?,
    })
}

/// A host name (`app.example.com`), or `.example.com` for the domain and its subdomains.
fn host_rule(s: &str) -> Result<String, String> {
    let host = s.to_ascii_lowercase();
    let bare = host.strip_prefix('.').unwrap_or(&host);
    if bare.is_empty()
        || !bare
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-'))
    {
        return Err(format!(
            "{s:?} is not a host name (use .example.com for subdomains)"
        ));
    }
    Ok(host)
}

fn login_settings(c: &mut Collector) -> Option<LoginSettings> {
    let methods = match c.take("sign_in_methods") {
        None => Some(vec![
            SignInMethod::Password,
            SignInMethod::EmailCode,
            SignInMethod::SmsCode,
            SignInMethod::Ticket,
        ]),
        Some(v) => parse_or(c, "sign_in_methods", v, |s| {
            let mut out: Vec<SignInMethod> = Vec::new();
            for m in s.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                let m = SignInMethod::parse(m)?;
                if !out.contains(&m) {
                    out.push(m);
                }
            }
            Ok(out)
        }),
    };
    let sign_up = match c.take("sign_up") {
        None => Some(true),
        Some(v) => parse_or(c, "sign_up", v, parse_bool),
    };
    let brand_name = match c.take("brand_name") {
        None => Some("CloudBase Gateway".to_string()),
        Some(v) => parse_or(c, "brand_name", v, |s| {
            if s.is_empty() || s.chars().count() > 64 || s.chars().any(char::is_control) {
                return Err("expected a name of 1 to 64 characters".into());
            }
            Ok(s.to_string())
        }),
    };
    let brand_logo_url = match c.take("brand_logo_url") {
        None => Some(None),
        Some(v) => parse_or(c, "brand_logo_url", v, |s| {
            if s.starts_with('/') && !s.starts_with("//") {
                // A path on the gateway's own origin (e.g. served by the upstream).
                if s.chars().any(|ch| {
                    ch.is_whitespace()
                        || ch.is_control()
                        || matches!(ch, '\\' | '"' | '\'' | '<' | '>')
                }) {
                    return Err("expected an https URL or a path".into());
                }
                return Ok(Some(s.to_string()));
            }
            let url = http_url(s)?;
            if url.scheme() != "https" {
                return Err("expected an https URL (or a path on this site)".into());
            }
            Ok(Some(url.to_string()))
        }),
    };
    let brand_color = match c.take("brand_color") {
        None => Some("#0052d9".to_string()),
        Some(v) => parse_or(c, "brand_color", v, |s| {
            let hex = s.strip_prefix('#').unwrap_or_default();
            if hex.len() == 6 && hex.chars().all(|ch| ch.is_ascii_hexdigit()) {
                Ok(s.to_ascii_lowercase())
            } else {
                Err("expected a colour such as #0052d9".into())
            }
        }),
    };
    let default_language = match c.take("default_language") {
        None => Some(crate::i18n::Lang::En),
        Some(v) => parse_or(c, "default_language", v, |s| match s {
            "en" => Ok(crate::i18n::Lang::En),
            "zh-CN" => Ok(crate::i18n::Lang::ZhCn),
            _ => Err("expected en or zh-CN".into()),
        }),
    };
    let providers = match c.take("providers") {
        None => Some(Vec::new()),
        Some(v) => parse_or(c, "providers", v, |s| {
            let mut out: Vec<ProviderButton> = Vec::new();
            for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let (id, label) = match item.split_once('=') {
                    Some((id, label)) => (id.trim(), Some(label.trim())),
                    None => (item, None),
                };
                if !crate::flows::provider::valid_id(id) {
                    return Err(format!(
                        "{id:?}: a provider id is 1 to 64 letters, digits, -, _ or ."
                    ));
                }
                if let Some(l) = label {
                    if l.is_empty() || l.chars().count() > 40 || l.chars().any(char::is_control) {
                        return Err(format!("{id}: a label is 1 to 40 characters"));
                    }
                }
                if out.iter().any(|p| p.id == id) {
                    return Err(format!("{id} is listed twice"));
                }
                out.push(ProviderButton {
                    id: id.to_string(),
                    label: label.map(str::to_string),
                });
            }
            Ok(out)
        }),
    };
    let captcha_mode = match c.take("captcha_mode") {
        None => Some(crate::flows::captcha::Mode::Redirect),
        Some(v) => parse_or(c, "captcha_mode", v, |s| match s {
            "redirect" => Ok(crate::flows::captcha::Mode::Redirect),
            "image" => Ok(crate::flows::captcha::Mode::Image),
            _ => Err("expected redirect or image".into()),
        }),
    };
    if let (Some(m), Some(true)) = (&methods, sign_up) {
        if !m.contains(&SignInMethod::EmailCode) && !m.contains(&SignInMethod::SmsCode) {
            c.problem(
                "sign_up",
                None,
                "sign-up confirms an e-mail or phone with a code: enable email_code or sms_code in sign_in_methods, or set sign_up = false",
            );
        }
    }
    Some(LoginSettings {
        methods: methods?,
        sign_up: sign_up?,
        brand_name: brand_name?,
        brand_logo_url: brand_logo_url?,
        brand_color: brand_color?,
        default_language: default_language?,
        providers: providers?,
        captcha_mode: captcha_mode?,
    })
}

/// `"N/duration"` (e.g. `1/60s`, `10/1h`), or `off`.
fn parse_rate(s: &str) -> Result<Option<Rate>, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad = || format!("{s:?}: expected a count per duration such as 10/5m, or off");
    let (n, per) = s.split_once('/').ok_or_else(bad)?;
    let count: u32 = n.trim().parse().map_err(|_| bad())?;
    let per = humantime::parse_duration(per.trim()).map_err(|_| bad())?;
    if count == 0 || count > 1_000_000 || per.is_zero() || per > Duration::from_secs(7 * 24 * 3600)
    {
        return Err(format!(
            "{s:?}: the count must be 1 to 1000000 and the duration at most 7 days (or use off)"
        ));
    }
    Ok(Some(Rate { count, per }))
}

fn rate_limit_settings(c: &mut Collector) -> Option<RateLimitSettings> {
    let mut rate = |key: &str, default: (u32, u64)| match c.take(key) {
        None => Some(Some(Rate {
            count: default.0,
            per: Duration::from_secs(default.1),
        })),
        Some(v) => parse_or(c, key, v, parse_rate),
    };
    let code_per_target = rate("rate_limit_code_per_target", (1, 60));
    let code_per_ip = rate("rate_limit_code_per_ip", (10, 3600));
    let password_per_user = rate("rate_limit_password_per_user", (10, 300));
    let password_per_ip = rate("rate_limit_password_per_ip", (10, 300));
    let anonymous_per_ip = rate("rate_limit_anonymous_per_ip", (60, 3600));
    let start_per_ip = rate("rate_limit_start_per_ip", (60, 60));
    let ticket_per_ip = rate("rate_limit_ticket_per_ip", (30, 60));
    let captcha_per_ip = rate("rate_limit_captcha_per_ip", (30, 60));
    Some(RateLimitSettings {
        code_per_target: code_per_target?,
        code_per_ip: code_per_ip?,
        password_per_user: password_per_user?,
        password_per_ip: password_per_ip?,
        anonymous_per_ip: anonymous_per_ip?,
        start_per_ip: start_per_ip?,
        ticket_per_ip: ticket_per_ip?,
        captcha_per_ip: captcha_per_ip?,
    })
}

fn upstream_url(s: &str) -> Result<Url, String> {
    let url = http_url(s)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("an upstream must not have a query or fragment".into());
    }
    Ok(url)
}

/// The routes as written, then a catch-all for `upstream` (authenticated) when it is set.
fn routes(c: &mut Collector) -> Option<Vec<RouteSpec>> {
    let default = c
        .take("upstream")
        .map(|v| parse_or(c, "upstream", v, upstream_url));
    // A bad top-level upstream is reported; the routes are still checked, so that every
    // problem shows at once.
    let mut ok = !matches!(default, Some(None));
    let default = default.flatten();
    let mut out = Vec::new();
    if let Some((raw, source)) = c.routes.take() {
        for (i, r) in raw.into_iter().enumerate() {
            let mut bad = |c: &mut Collector, msg: String| {
                c.problem(
                    "routes",
                    Some(source.clone()),
                    format!("route {}: {msg}", i + 1),
                );
                ok = false;
            };
            if !r.path.starts_with('/')
                || r.path.contains(['?', '#', '\\'])
                || r.path.contains("..")
            {
                bad(
                    c,
                    format!("path {:?} must be a plain path starting with /", r.path),
                );
                continue;
            }
            let upstream = match (&r.upstream, &default) {
                (Some(u), _) => match upstream_url(u) {
                    Ok(u) => u,
                    Err(e) => {
                        bad(c, format!("upstream: {e}"));
                        continue;
                    }
                },
                (None, Some(d)) => d.clone(),
                (None, None) => {
                    bad(
                        c,
                        "has no upstream, and no top-level upstream is set".into(),
                    );
                    continue;
                }
            };
            let policy = match (r.policy.as_deref(), r.groups) {
                (None | Some("groups"), Some(g))
                    if !g.is_empty() && g.iter().all(|g| !g.is_empty()) =>
                {
                    Policy::Groups(g)
                }
                (_, Some(_)) => {
                    bad(c, "groups must be a non-empty list of group ids, with policy unset or \"groups\"".into());
                    continue;
                }
                (None | Some("authenticated"), None) => Policy::Authenticated,
                (Some("public"), None) => Policy::Public,
                (Some("registered"), None) => Policy::Registered,
                (Some(other), None) => {
                    bad(c, format!("policy {other:?}: expected public, authenticated, registered, or groups = [...]"));
                    continue;
                }
            };
            let host = r.host.map(|h| h.trim().to_ascii_lowercase());
            if host
                .as_deref()
                .is_some_and(|h| h.is_empty() || h.contains(['/', ':', ' ']))
            {
                bad(
                    c,
                    "host must be a bare host name such as app.example.com".into(),
                );
                continue;
            }
            out.push(RouteSpec {
                host,
                path: r.path,
                upstream,
                policy,
                anonymous_auto_sign_in: r.anonymous_auto_sign_in,
            });
        }
    }
    match default {
        Some(upstream) if !out.iter().any(|r| r.host.is_none() && r.path == "/") => {
            out.push(RouteSpec {
                host: None,
                path: "/".into(),
                upstream,
                policy: Policy::Authenticated,
                anonymous_auto_sign_in: false,
            });
        }
        Some(_) => {}
        None if out.is_empty() && ok => {
            c.problem(
                "upstream",
                None,
                "is required (or [[routes]] tables): the application the gateway protects, e.g. http://127.0.0.1:8080",
            );
            return None;
        }
        None => {}
    }
    ok.then_some(out)
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn int(c: &mut Collector, key: &str, default: u64, min: u64, max: u64) -> Option<u64> {
    match c.take(key) {
        None => Some(default),
        Some(v) => parse_or(c, key, v, |s| match s.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!("expected a whole number from {min} to {max}")),
        }),
    }
}

/// A comma-separated list (a TOML array arrives joined), each item parsed by `item`.
fn list<T>(
    c: &mut Collector,
    key: &str,
    item: impl Fn(&str) -> Result<T, String>,
) -> Option<Vec<T>> {
    match c.take(key) {
        None => Some(Vec::new()),
        Some(v) => parse_or(c, key, v, |s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(&item)
                .collect()
        }),
    }
}

fn parse_or<T>(
    c: &mut Collector,
    key: &str,
    raw: RawValue,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    match parse(raw.value.trim()) {
        Ok(v) => Some(v),
        Err(message) => {
            c.problem(key, Some(raw.source), message);
            None
        }
    }
}

fn http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|_| "expected an absolute http(s) URL".to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("expected an absolute http(s) URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain a user name or password".into());
    }
    Ok(url)
}

fn ident(s: &str, max: usize) -> Result<&str, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > max
        || !s
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        return Err(format!("expected up to {max} letters, digits, '-' or '_'"));
    }
    Ok(s)
}

fn duration(c: &mut Collector, key: &str, default: Duration, max: Duration) -> Option<Duration> {
    debug_assert!(KEYS
        .iter()
        .any(|k| k.key == key && k.kind == Kind::Duration));
    match c.take(key) {
        None => Some(default),
        Some(v) => parse_or(c, key, v, |s| {
            // A bare number means seconds, as in most gateways' configs.
            let d = match s.parse::<u64>() {
                Ok(secs) => Duration::from_secs(secs),
                Err(_) => humantime::parse_duration(s)
                    .map_err(|_| "expected a duration such as 10s, 500ms or 2m".to_string())?,
            };
            if d.is_zero() || d > max {
                return Err(format!(
                    "must be more than 0 and at most {}",
                    humantime::format_duration(max)
                ));
            }
            Ok(d)
        }),
    }
}

/// Reads a secret from `key` or from the file named by `key_file`; both at once is an error.
fn secret(c: &mut Collector, key: &str) -> Option<Secret> {
    let file_key = format!("{key}_file");
    match (c.take(key), c.take(&file_key)) {
        (None, None) => None,
        (Some(v), None) => {
            if v.value.is_empty() {
                c.problem(
                    key,
                    Some(v.source),
                    "must not be empty (leave it unset instead)",
                );
                None
            } else if v.value == "[redacted]" {
                c.problem(
                    key,
                    Some(v.source),
                    "is the placeholder check-config prints: put the real secret here, or use the _file variant",
                );
                None
            } else {
                Some(Secret::new(v.value))
            }
        }
        (None, Some(f)) => match std::fs::read_to_string(f.value.trim()) {
            Ok(text) => {
                let text = text.trim_end_matches(['\n', '\r']);
                if text.is_empty() {
                    c.problem(&file_key, Some(f.source), "the file is empty");
                    None
                } else {
                    Some(Secret::new(text))
                }
            }
            Err(e) => {
                c.problem(
                    &file_key,
                    Some(f.source),
                    format!("cannot read {}: {}", f.value.trim(), e.kind()),
                );
                None
            }
        },
        (Some(v), Some(_)) => {
            c.problem(
                key,
                Some(v.source),
                format!("set either {key} or {file_key}, not both"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn minimal() -> Vec<(&'static str, String)> {
        vec![
            ("env_id", "test-env".into()),
            ("public_url", "https://app.example.com".into()),
            ("upstream", "http://127.0.0.1:8080".into()),
        ]
    }

    #[test]
    fn defaults_fill_everything_but_the_required_keys() {
        let cfg = load(None, env(&[]), minimal()).unwrap();
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:4180");
        assert_eq!(cfg.cloudbase.region, "ap-shanghai");
        assert_eq!(cfg.cloudbase.client_id, "test-env");
        assert_eq!(
            cfg.cloudbase.api_origin.as_str(),
            "https://test-env.ap-shanghai.tcb-api.tencentcloudapi.com/"
        );
        assert_eq!(cfg.cloudbase.timeout, Duration::from_secs(10));
        assert_eq!(cfg.log.format, LogFormat::Text);
        assert!(cfg.cloudbase.client_secret.is_none());
    }

    #[test]
    fn missing_required_keys_are_reported_together() {
        let err = load(None, env(&[]), []).unwrap_err();
        assert!(err.mentions("env_id"));
        assert!(err.mentions("public_url"));
        assert!(err.mentions("upstream"));
        assert_eq!(err.0.len(), 3, "{err}");
        let text = err.to_string();
        assert!(text.contains("CLOUDBASE_GATEWAY_ENV_ID"), "{text}");
    }

    #[test]
    fn precedence_is_file_then_env_then_flags() {
        let f = file("env_id = \"from-file\"\nregion = \"ap-guangzhou\"\nclient_id = \"file-client\"\npublic_url = \"https://a.example.com\"\nupstream = \"http://127.0.0.1:8080\"\n");
        let cfg = load(
            Some(f.path()),
            env(&[
                ("CLOUDBASE_GATEWAY_CLIENT_ID", "env-client"),
                ("CLOUDBASE_GATEWAY_ENV_ID", "from-env"),
            ]),
            [("env_id", "from-flag".to_string())],
        )
        .unwrap();
        assert_eq!(cfg.cloudbase.env_id, "from-flag");
        assert_eq!(cfg.cloudbase.client_id, "env-client");
        assert_eq!(cfg.cloudbase.region, "ap-guangzhou");
        assert_eq!(
            cfg.cloudbase.api_origin.host_str(),
            Some("from-flag.ap-guangzhou.tcb-api.tencentcloudapi.com")
        );
    }

    #[test]
    fn unknown_keys_and_env_vars_are_errors() {
        let f = file("env_id = \"e\"\npublic_url = \"https://a.example.com\"\nupstream = \"http://u\"\nclient_secert = \"x\"\n[routez]\nx = 1\n");
        let err = load(
            Some(f.path()),
            env(&[("CLOUDBASE_GATEWAY_LISTN", "x"), ("OTHER_VAR", "ignored")]),
            [],
        )
        .unwrap_err();
        assert!(err.mentions("client_secert"), "{err}");
        assert!(err.mentions("routez"), "{err}");
        assert!(err.mentions("listn"), "{err}");
        assert!(
            err.to_string()
                .contains("unknown environment variable CLOUDBASE_GATEWAY_LISTN"),
            "{err}"
        );
        assert_eq!(err.0.len(), 3, "{err}");
    }

    #[test]
    fn every_invalid_value_is_reported_with_its_source() {
        let f = file(concat!(
            "listen = \"nowhere\"\n",
            "public_url = \"ftp://x\"\n",
            "env_id = \"bad env\"\n",
            "region = \"\"\n",
            "api_origin = \"https://x.example.com/path\"\n",
            "cloudbase_timeout = \"soon\"\n",
            "log_format = \"xml\"\n",
            "log_level = \"[[[\"\n",
            "upstream = \"ftp://x\"\n",
            "cookie_secret = \"short\"\n",
            "insecure_cookie = \"maybe\"\n",
            "session_capacity = 0\n",
            "refresh_margin = \"x\"\n",
            "max_header_size = 5\n",
            "trusted_proxies = [\"10.0.0.0/99\"]\n",
            "allowed_redirect_hosts = [\"bad host\"]\n",
            "metrics_listen = \"nowhere\"\n",
            "[[routes]]\npath = \"x\"\nupstream = \"http://u\"\n",
        ));
        let err = load(
            Some(f.path()),
            env(&[("CLOUDBASE_GATEWAY_CLIENT_ID", "a b")]),
            [],
        )
        .unwrap_err();
        for key in [
            "listen",
            "public_url",
            "env_id",
            "region",
            "api_origin",
            "cloudbase_timeout",
            "log_format",
            "log_level",
            "client_id",
            "upstream",
            "cookie_secret",
            "insecure_cookie",
            "session_capacity",
            "refresh_margin",
            "max_header_size",
            "trusted_proxies",
            "allowed_redirect_hosts",
            "metrics_listen",
            "routes",
        ] {
            assert!(err.mentions(key), "{key} missing from {err}");
        }
        assert_eq!(err.0.len(), 19, "{err}");
        let client = err.0.iter().find(|p| p.key == "client_id").unwrap();
        assert_eq!(client.source, Some(Source::Env));
        let listen = err.0.iter().find(|p| p.key == "listen").unwrap();
        assert!(matches!(listen.source, Some(Source::File(_))));
    }

    #[test]
    fn public_url_with_path_query_or_userinfo_is_refused() {
        for bad in [
            "https://a.example.com/app",
            "https://a.example.com/?x=1",
            "https://u:p@a.example.com",
            "a.example.com",
        ] {
            let err = load(
                None,
                env(&[]),
                [("env_id", "e".to_string()), ("public_url", bad.to_string())],
            )
            .unwrap_err();
            assert!(err.mentions("public_url"), "{bad}: {err}");
        }
    }

    #[test]
    fn timeouts_accept_humantime_and_seconds_within_bounds() {
        let mut flags = minimal();
        flags.push(("cloudbase_timeout", "1500ms".into()));
        assert_eq!(
            load(None, env(&[]), flags).unwrap().cloudbase.timeout,
            Duration::from_millis(1500)
        );
        let f =
            file("env_id = \"e\"\npublic_url = \"https://a.example.com\"\nupstream = \"http://127.0.0.1:8080\"\ncloudbase_timeout = 3\n");
        assert_eq!(
            load(Some(f.path()), env(&[]), [])
                .unwrap()
                .cloudbase
                .timeout,
            Duration::from_secs(3)
        );
        for bad in ["0", "0s", "1h"] {
            let mut flags = minimal();
            flags.push(("cloudbase_timeout", bad.into()));
            assert!(
                load(None, env(&[]), flags)
                    .unwrap_err()
                    .mentions("cloudbase_timeout"),
                "{bad}"
            );
        }
    }

    #[test]
    fn secrets_come_from_value_or_file_and_are_redacted() {
        let secret_file = file("s3cr3t-value\n");
        let cfg = load(
            None,
            env(&[(
                "CLOUDBASE_GATEWAY_CLIENT_SECRET_FILE",
                secret_file.path().to_str().unwrap(),
            )]),
            minimal(),
        )
        .unwrap();
        assert_eq!(
            cfg.cloudbase.client_secret.as_ref().unwrap().expose(),
            "s3cr3t-value"
        );
        assert!(!format!("{cfg:?}").contains("s3cr3t"));
        let shown = cfg.redacted_toml();
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("client_secret = \"[redacted]\""), "{shown}");

        // A later source replaces the other spelling from an earlier source.
        let f = file("env_id = \"e\"\npublic_url = \"https://a.example.com\"\nupstream = \"http://127.0.0.1:8080\"\nclient_secret = \"from-file\"\n");
        let cfg = load(
            Some(f.path()),
            env(&[(
                "CLOUDBASE_GATEWAY_CLIENT_SECRET_FILE",
                secret_file.path().to_str().unwrap(),
            )]),
            [],
        )
        .unwrap();
        assert_eq!(
            cfg.cloudbase.client_secret.unwrap().expose(),
            "s3cr3t-value"
        );

        let placeholder = load(
            None,
            env(&[("CLOUDBASE_GATEWAY_CLIENT_SECRET", "[redacted]")]),
            minimal(),
        )
        .unwrap_err();
        assert!(placeholder.mentions("client_secret"), "{placeholder}");

        let both = load(
            None,
            env(&[
                ("CLOUDBASE_GATEWAY_CLIENT_SECRET", "a"),
                ("CLOUDBASE_GATEWAY_CLIENT_SECRET_FILE", "/x"),
            ]),
            minimal(),
        )
        .unwrap_err();
        assert!(both.mentions("client_secret"), "{both}");

        let missing = load(
            None,
            env(&[(
                "CLOUDBASE_GATEWAY_CLIENT_SECRET_FILE",
                "/nonexistent/secret",
            )]),
            minimal(),
        )
        .unwrap_err();
        assert!(missing.mentions("client_secret_file"), "{missing}");

        let empty_file = file("\n");
        let empty = load(
            None,
            env(&[(
                "CLOUDBASE_GATEWAY_CLIENT_SECRET_FILE",
                empty_file.path().to_str().unwrap(),
            )]),
            minimal(),
        )
        .unwrap_err();
        assert!(empty.mentions("client_secret_file"), "{empty}");

        let empty_value = load(
            None,
            env(&[("CLOUDBASE_GATEWAY_CLIENT_SECRET", "")]),
            minimal(),
        )
        .unwrap_err();
        assert!(empty_value.mentions("client_secret"), "{empty_value}");
    }

    #[test]
    fn check_config_output_loads_back_to_the_same_configuration() {
        let mut flags = minimal();
        flags.push(("cloudbase_timeout", "1500ms".into()));
        flags.push(("log_format", "json".into()));
        let cfg = load(
            None,
            env(&[("CLOUDBASE_GATEWAY_REGION", "ap-beijing")]),
            flags,
        )
        .unwrap();
        let f = file(&cfg.redacted_toml());
        let again = load(Some(f.path()), env(&[]), []).unwrap();
        assert_eq!(again.redacted_toml(), cfg.redacted_toml());
        assert_eq!(again.cloudbase.timeout, Duration::from_millis(1500));
        assert_eq!(again.cloudbase.region, "ap-beijing");
        assert_eq!(again.log.format, LogFormat::Json);
    }

    #[test]
    fn broken_toml_is_reported_without_quoting_the_file() {
        let f = file("env_id = \"e\"\nclient_secret = \"topsecret\n");
        let err = load(Some(f.path()), env(&[]), []).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("not valid TOML at line"), "{text}");
        assert!(!text.contains("topsecret"), "{text}");
        let missing = load(Some(Path::new("/nonexistent/gateway.toml")), env(&[]), []).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("cannot read /nonexistent/gateway.toml"),
            "{missing}"
        );
    }

    #[test]
    fn non_scalar_values_for_known_keys_are_refused() {
        let f = file("env_id = [\"a\"]\npublic_url = \"https://a.example.com\"\nupstream = \"http://127.0.0.1:8080\"\n");
        let err = load(Some(f.path()), env(&[]), []).unwrap_err();
        assert!(err.mentions("env_id"));
        assert!(err.to_string().contains("expected a string"), "{err}");
    }

    #[test]
    fn routes_take_policies_and_fall_back_to_the_top_level_upstream() {
        let f = file(concat!(
            "env_id = \"e\"\npublic_url = \"https://a.example.com\"\n",
            "upstream = \"http://127.0.0.1:8080\"\n",
            "[[routes]]\npath = \"/public\"\npolicy = \"public\"\n",
            "[[routes]]\nhost = \"Admin.Example.com\"\npath = \"/\"\ngroups = [\"admins\"]\nupstream = \"http://127.0.0.1:9090/base\"\n",
            "[[routes]]\npath = \"/anon\"\npolicy = \"authenticated\"\nanonymous_auto_sign_in = true\n",
        ));
        let cfg = load(Some(f.path()), env(&[]), []).unwrap();
        assert_eq!(cfg.routes.len(), 4);
        assert_eq!(cfg.routes[0].policy, Policy::Public);
        assert_eq!(cfg.routes[0].upstream.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(cfg.routes[1].host.as_deref(), Some("admin.example.com"));
        assert_eq!(cfg.routes[1].policy, Policy::Groups(vec!["admins".into()]));
        assert!(cfg.routes[2].anonymous_auto_sign_in);
        assert_eq!(cfg.routes[3].path, "/");
        assert_eq!(cfg.routes[3].policy, Policy::Authenticated);
        let again = file(&cfg.redacted_toml());
        let cfg2 = load(Some(again.path()), env(&[]), []).unwrap();
        assert_eq!(cfg2.redacted_toml(), cfg.redacted_toml());

        let err = load(None, env(&[("CLOUDBASE_GATEWAY_ROUTES", "x")]), minimal()).unwrap_err();
        assert!(
            err.to_string().contains("only in the configuration file"),
            "{err}"
        );
    }

    #[test]
    fn trusted_proxies_match_networks_and_mapped_addresses() {
        let net = IpNet::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.9.9".parse().unwrap()));
        let one = IpNet::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(IpNet::parse("::1/128")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(IpNet::parse("10.0.0.0/33").is_err());
        assert!(IpNet::parse("ten").is_err());
    }

    #[test]
    fn plain_http_needs_insecure_cookie_and_keyrings_split_on_commas() {
        let mut flags = minimal();
        flags[1].1 = "http://localhost:4180".into();
        let err = load(None, env(&[]), flags.clone()).unwrap_err();
        assert!(err.mentions("insecure_cookie"), "{err}");
        flags.push(("insecure_cookie", "true".into()));
        let a = "a".repeat(32);
        let b = "b".repeat(40);
        let cfg = load(
            None,
            env(&[("CLOUDBASE_GATEWAY_COOKIE_SECRET", &format!("{a}, {b}"))]),
            flags,
        )
        .unwrap();
        assert!(cfg.cookie.insecure);
        let keys = cfg.cookie.secrets.as_ref().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].expose(), b);
        let shown = cfg.redacted_toml();
        assert!(!shown.contains(&a) && !shown.contains(&b), "{shown}");
    }

    #[test]
    fn redis_settings_are_checked_together_and_redacted() {
        let secret = "0123456789abcdef0123456789abcdef";
        // Every problem at once: both topologies, no master name, a bad URL, no cookie secret.
        let e = load(
            None,
            env(&[
                ("CLOUDBASE_GATEWAY_SESSION_STORE_TYPE", "redis"),
                ("CLOUDBASE_GATEWAY_REDIS_USE_SENTINEL", "true"),
                ("CLOUDBASE_GATEWAY_REDIS_USE_CLUSTER", "true"),
                (
                    "CLOUDBASE_GATEWAY_REDIS_CLUSTER_CONNECTION_URLS",
                    "http://x:1",
                ),
            ]),
            minimal(),
        )
        .unwrap_err();
        for key in [
            "redis_use_sentinel",
            "redis_cluster_connection_urls",
            "cookie_secret",
        ] {
            assert!(e.mentions(key), "{key}: {e}");
        }
        let e = load(
            None,
            env(&[
                ("CLOUDBASE_GATEWAY_SESSION_STORE_TYPE", "redis"),
                ("CLOUDBASE_GATEWAY_COOKIE_SECRET", secret),
                ("CLOUDBASE_GATEWAY_REDIS_USE_SENTINEL", "true"),
            ]),
            minimal(),
        )
        .unwrap_err();
        assert!(e.mentions("redis_sentinel_master_name"), "{e}");
        assert!(e.mentions("redis_sentinel_connection_urls"), "{e}");
        let e = load(
            None,
            env(&[
                ("CLOUDBASE_GATEWAY_SESSION_STORE_TYPE", "redis"),
                ("CLOUDBASE_GATEWAY_COOKIE_SECRET", secret),
                (
                    "CLOUDBASE_GATEWAY_REDIS_CONNECTION_URL",
                    "redis://h:6379/not-a-db",
                ),
                ("CLOUDBASE_GATEWAY_REDIS_TIMEOUT", "0s"),
            ]),
            minimal(),
        )
        .unwrap_err();
        assert!(
            e.mentions("redis_connection_url") && e.mentions("redis_timeout"),
            "{e}"
        );
        assert!(
            !e.to_string().contains("not-a-db"),
            "values are not echoed: {e}"
        );

        // Sentinel: the db index comes from redis_connection_url; passwords are redacted,
        // including one inside a URL.
        let cfg = load(
            None,
            env(&[
                ("CLOUDBASE_GATEWAY_SESSION_STORE_TYPE", "redis"),
                ("CLOUDBASE_GATEWAY_COOKIE_SECRET", secret),
                ("CLOUDBASE_GATEWAY_REDIS_USE_SENTINEL", "true"),
                ("CLOUDBASE_GATEWAY_REDIS_SENTINEL_MASTER_NAME", "mymaster"),
                (
                    "CLOUDBASE_GATEWAY_REDIS_SENTINEL_CONNECTION_URLS",
                    "redis://:sentinel-url-pass@10.0.0.1:26379,redis://10.0.0.2:26379",
                ),
                (
                    "CLOUDBASE_GATEWAY_REDIS_SENTINEL_PASSWORD",
                    "sentinel-pass-xyz",
                ),
                (
                    "CLOUDBASE_GATEWAY_REDIS_CONNECTION_URL",
                    "redis://u:url-pass-xyz@m:6379/5",
                ),
                ("CLOUDBASE_GATEWAY_REDIS_PASSWORD", "redis-pass-xyz"),
            ]),
            minimal(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let StoreSettings::Redis(r) = &cfg.store else {
            panic!("redis")
        };
        assert!(matches!(r.topology, RedisTopology::Sentinel { db: 5, .. }));
        let shown = cfg.redacted_toml();
        for p in [
            "sentinel-url-pass",
            "sentinel-pass-xyz",
            "redis-pass-xyz",
            secret,
        ] {
            assert!(!shown.contains(p), "{p} shown: {shown}");
            assert!(!format!("{cfg:?}").contains(p), "{p} in Debug");
        }
        assert!(
            shown.contains("redis_use_sentinel") && shown.contains("[redacted]"),
            "{shown}"
        );
        assert!(!r.location().contains("pass"), "{}", r.location());

        // A standalone URL's own password.
        let cfg = load(
            None,
            env(&[
                ("CLOUDBASE_GATEWAY_SESSION_STORE_TYPE", "redis"),
                ("CLOUDBASE_GATEWAY_COOKIE_SECRET", secret),
                (
                    "CLOUDBASE_GATEWAY_REDIS_CONNECTION_URL",
                    "rediss://gw:in-url-pass-xyz@redis.internal:6380/2",
                ),
            ]),
            minimal(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let shown = cfg.redacted_toml();
        assert!(!shown.contains("in-url-pass-xyz"), "{shown}");
        assert!(
            shown.contains("rediss://gw:[redacted]@redis.internal:6380/2"),
            "{shown}"
        );
        // Memory stays the default.
        let cfg = load(None, env(&[]), minimal()).unwrap();
        assert!(matches!(cfg.store, StoreSettings::Memory));
    }

    #[test]
    fn example_config_is_valid_and_lists_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        for k in KEYS {
            assert!(
                text.contains(&format!("{} =", k.key)),
                "{} missing from the example",
                k.key
            );
            assert!(
                text.contains(&format!("{ENV_PREFIX}{}", k.key.to_ascii_uppercase())),
                "env name of {} missing",
                k.key
            );
        }
        load(Some(&path), env(&[]), []).unwrap();
    }
}
