//! Builds the gateway's HTTP servers from a [`Config`]: the main listener (endpoints and the
//! proxy) and, when configured, the separate metrics listener.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};

use crate::clock::{SharedClock, SystemClock};
use crate::cloudbase::client::{ClientSettings, CloudBaseClient};
use crate::config::Config;
use crate::entropy::{OsEntropy, SharedEntropy};
use crate::flow::redirect::ReturnUrls;
use crate::flow::store::FlowStore;
use crate::keyring::Keyring;
use crate::metrics::Metrics;
use crate::proxy::policy::Routes;
use crate::ratelimit::RateLimits;
use crate::session::cookie::CookieFactory;
use crate::session::manager::SessionManager;
use crate::session::memory::MemoryStore;
use crate::web::{routes, Gateway, Worker};

/// Injected time and randomness.
#[derive(Clone)]
pub struct Deps {
    /// The clock.
    pub clock: SharedClock,
    /// The entropy source.
    pub entropy: SharedEntropy,
    /// Worker threads (0 = one per core).
    pub workers: usize,
}

impl Default for Deps {
    fn default() -> Self {
        Deps {
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy),
            workers: 0,
        }
    }
}

/// A started gateway.
pub struct Running {
    /// The main server; must be awaited (or spawned).
    pub server: actix_web::dev::Server,
    /// The metrics server, when `metrics_listen` is set; spawn it.
    pub metrics: Option<actix_web::dev::Server>,
    /// The shared state, for tests that look inside.
    pub gateway: web::Data<Gateway>,
}

/// Builds the gateway on `listener` with the system clock and OS randomness, starting the
/// metrics listener in the background when configured. Must run inside an actix system.
///
/// Fails when a listener cannot be used.
pub fn build(config: &Config, listener: TcpListener) -> std::io::Result<actix_web::dev::Server> {
    let metrics = match config.metrics_listen {
        Some(addr) => Some(TcpListener::bind(addr)?),
        None => None,
    };
    let running = build_with(config.clone(), listener, metrics, Deps::default())?;
    if let Some(m) = running.metrics {
        actix_web::rt::spawn(m);
    }
    Ok(running.server)
}

/// How long a flow in progress (a code sent, a sudo token) stays usable: a code's own life.
const FLOW_TTL: Duration = Duration::from_secs(600);

/// Hosts a return URL may name: the configured ones and every host a route serves (the
/// gateway sent the browser from there, so sending it back is no open redirect).
fn redirect_hosts(config: &Config) -> Vec<String> {
    let mut hosts = config.allowed_redirect_hosts.clone();
    for h in config.routes.iter().filter_map(|r| r.host.clone()) {
        if !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    hosts
}

/// The hosts the gateway serves: `public_url`'s, every route's and `allowed_hosts`.
fn served_hosts(config: &Config) -> crate::hosts::HostRules {
    let public = config.public_url.host_str().unwrap_or_default();
    let public = crate::web::host_without_port(public);
    crate::hosts::HostRules::new(
        std::iter::once(public)
            .chain(config.routes.iter().filter_map(|r| r.host.clone()))
            .chain(config.allowed_hosts.iter().cloned()),
    )
}

/// Builds the gateway with injected dependencies and an optional metrics listener.
///
/// Fails when a listener cannot be used.
pub fn build_with(
    config: Config,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    deps: Deps,
) -> std::io::Result<Running> {
    tracing::info!(
        listen = %listener.local_addr()?,
        public_url = %config.public_url,
        env_id = %config.cloudbase.env_id,
        api_origin = %config.cloudbase.api_origin,
        routes = config.routes.len(),
        "gateway starting"
    );
    if config.cookie.insecure {
        tracing::warn!("insecure_cookie is on: the session cookie is sent over plain http; use this for development only");
    }
    if config.insecure_allow_any_host {
        tracing::warn!("insecure_allow_any_host is on: requests for any Host are served and that host is passed upstream, where links built from it can be poisoned; list the hosts in allowed_hosts instead");
    }
    if config.forward_auth.without_trusted_proxy == crate::config::UntrustedForwardAuth::RootPolicy
    {
        tracing::warn!("forward_auth_without_trusted_proxy = \"root_policy\": /__auth/auth answers callers outside trusted_proxies by the policy of /, whatever request they ask about; path policies do not hold for them");
    }
    if let crate::config::StoreSettings::Redis(r) = &config.store {
        if r.insecure_skip_tls_verify {
            tracing::warn!("insecure_redis_skip_tls_verify is on: the Redis server's certificate is not checked, so anyone on the path can read and change sessions; use redis_ca_file instead");
        }
    }
    if config.cookie.secrets.is_none() {
        tracing::warn!("no cookie_secret configured: a random key was made, and sessions end when the process does");
    }
    let keyring = Keyring::new(config.cookie.secrets.as_deref(), deps.entropy.as_ref());
    let metrics = Arc::new(Metrics::default());
    let shared = match &config.store {
        crate::config::StoreSettings::Memory => {
            tracing::info!(
                store = "memory",
                "session store: in this process (sessions end with it)"
            );
            None
        }
        crate::config::StoreSettings::Redis(r) => {
            tracing::info!(store = "redis", location = %r.location(), key_prefix = %r.key_prefix, "session store: redis");
            Some(Arc::new(crate::store::redis::Redis::new(
                (**r).clone(),
                keyring.derive("redis-names"),
                metrics.clone(),
            )))
        }
    };
    let store: Arc<dyn crate::session::SessionStore> = match &shared {
        None => Arc::new(MemoryStore::new(
            config.session.capacity,
            deps.clock.clone(),
        )),
        Some(redis) => Arc::new(crate::session::redis::RedisSessionStore::new(
            redis.clone(),
            deps.clock.clone(),
            deps.entropy.clone(),
            // The lease outlives a refresh call that runs to its deadline, and is renewed.
            config.cloudbase.timeout + Duration::from_secs(5),
            Some(config.session.capacity),
        )),
    };
    let sessions = SessionManager::new(
        store,
        CookieFactory::new(&config.cookie, &keyring),
        deps.clock.clone(),
        deps.entropy.clone(),
        config.session.ttl,
        config.session.refresh_margin,
        metrics.clone(),
    );
    let sealer = |purpose: &str| {
        crate::flow::seal::Sealer::new(&keyring.derive(purpose), deps.entropy.clone())
    };
    let (flows, limits, captcha_tokens) = match &shared {
        None => (
            FlowStore::new(
                config.session.capacity,
                FLOW_TTL,
                deps.clock.clone(),
                deps.entropy.clone(),
            ),
            RateLimits::new(&config.rate_limits, deps.clock.clone()),
            crate::flows::captcha::TokenCache::new(config.session.capacity, deps.clock.clone()),
        ),
        Some(redis) => (
            FlowStore::redis(
                redis.clone(),
                crate::store::RecordSealer::new(keyring.derive("flow-seal"), deps.entropy.clone()),
                FLOW_TTL,
                deps.clock.clone(),
                deps.entropy.clone(),
            ),
            RateLimits::redis(&config.rate_limits, deps.clock.clone(), redis.clone()),
            crate::flows::captcha::TokenCache::redis(
                redis.clone(),
                crate::store::RecordSealer::new(
                    keyring.derive("captcha-token-seal"),
                    deps.entropy.clone(),
                ),
                deps.clock.clone(),
            ),
        ),
    };
    let accounts = match &shared {
        // A user name, an e-mail and a phone per account.
        None => crate::ratelimit::Accounts::new(
            (config.session.capacity as usize).saturating_mul(3),
            deps.clock.clone(),
        ),
        Some(redis) => crate::ratelimit::Accounts::redis(
            redis.clone(),
            crate::store::RecordSealer::new(keyring.derive("account-seal"), deps.entropy.clone()),
            config.session.ttl,
            deps.clock.clone(),
        ),
    };
    let states = crate::flow::state::States::new(
        sealer("state-seal"),
        keyring.derive("state-browser"),
        deps.clock.clone(),
    );
    let brand = Arc::new(crate::web::pages::Brand::new(
        config.login.brand_name.clone(),
        config.login.brand_logo_url.clone().unwrap_or_default(),
        config.login.brand_color.clone(),
    ));
    let gateway = web::Data::new(Gateway {
        brand,
        flows,
        limits,
        accounts,
        states,
        captcha_tokens,
        routes: Routes::new(config.routes.clone()),
        hosts: served_hosts(&config),
        return_urls: ReturnUrls::new(&config.public_url, &redirect_hosts(&config)),
        sessions,
        metrics: metrics.clone(),
        clock: deps.clock.clone(),
        entropy: deps.entropy.clone(),
        config,
    });

    let settings = ClientSettings::from_config(&gateway.config.cloudbase);
    let proxy_timeout = gateway.config.proxy.timeout;
    let gw = gateway.clone();
    let entropy = deps.entropy.clone();
    let observer = metrics.clone();
    let mut server = HttpServer::new(move || {
        let cloudbase =
            CloudBaseClient::new(settings.clone(), entropy.clone()).with_observer(observer.clone());
        let upstream_client = |connector: awc::Connector<_>| {
            awc::Client::builder()
                .connector(connector.timeout(proxy_timeout.min(Duration::from_secs(10))))
                .disable_redirects()
                .max_http_version(awc::http::Version::HTTP_11)
                .timeout(proxy_timeout)
                .finish()
        };
        let http = upstream_client(awc::Connector::new().limit(0));
        // A connection older than zero is never taken from the pool: always a fresh one.
        let http_fresh =
            upstream_client(awc::Connector::new().limit(0).conn_lifetime(Duration::ZERO));
        App::new()
            .app_data(gw.clone())
            .app_data(web::Data::new(Worker {
                cloudbase,
                http,
                http_fresh,
            }))
            .wrap_fn(routes::around)
            .configure(routes::configure)
    })
    .disable_signals();
    if deps.workers > 0 {
        server = server.workers(deps.workers);
    }
    let server = server.listen(listener)?.run();

    let metrics_server = match metrics_listener {
        None => None,
        Some(l) => {
            let gw = gateway.clone();
            Some(
                HttpServer::new(move || {
                    App::new().app_data(gw.clone()).route(
                        "/metrics",
                        web::get().to(|gw: web::Data<Gateway>| async move {
                            HttpResponse::Ok()
                                .content_type("text/plain; version=0.0.4")
                                .body(gw.metrics.render(gw.sessions.store().count()))
                        }),
                    )
                })
                .workers(1)
                .disable_signals()
                .listen(l)?
                .run(),
            )
        }
    };
    Ok(Running {
        server,
        metrics: metrics_server,
        gateway,
    })
}
