//! Command-line entry: `serve`, `demo`, `emulator`, `check-config`, `healthcheck`, `ticket`.

// mimalloc: the request path allocates many small, short-lived buffers (headers, bodies);
// it measured faster than the system allocator there (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use cloudbase_gateway::config::{self, Config, LogFormat};
use cloudbase_gateway::emulator::{self, Emulator, EmulatorOptions};
use cloudbase_gateway::entropy::OsEntropy;
use cloudbase_gateway::{server, telemetry, ticket};

#[derive(Parser)]
#[command(
    name = "cloudbase-gateway",
    version,
    about = "Authenticating edge gateway for Tencent CloudBase auth"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(ConfigArgs),
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig(ConfigArgs),
    /// Run a local CloudBase auth emulator (no Tencent account needed).
    Emulator(EmulatorArgs),
    /// Run the emulator, a whoami upstream and the gateway together, with demo users.
    Demo(DemoArgs),
    /// Exit 0 when the gateway at URL answers /ping (for container health checks).
    Healthcheck(HealthArgs),
    /// Print a custom-login ticket, built as the node SDK's createTicket builds it.
    Ticket(TicketArgs),
}

/// Configuration sources. Flags override env (CLOUDBASE_GATEWAY_*), which overrides the file.
#[derive(Args)]
struct ConfigArgs {
    /// TOML configuration file (see gateway.example.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on (key: listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// URL browsers use to reach the gateway (key: public_url).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// CloudBase environment id (key: env_id).
    #[arg(long, value_name = "ID")]
    env_id: Option<String>,
    /// Origin of the CloudBase auth API (key: api_origin).
    #[arg(long, value_name = "URL")]
    api_origin: Option<String>,
    /// Log filter, e.g. info or debug (key: log_level).
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    /// Log format: text or json (key: log_format).
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// The application to protect (key: upstream).
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Serve /metrics on this address (key: metrics_listen).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
}

#[derive(Args)]
struct DemoArgs {
    /// Address of the gateway; port 0 picks a free one (printed on the first stdout line).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4180")]
    listen: String,
    /// Users to seed instead of the demo users (the emulator's --users format).
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,
    /// Proxy to this URL instead of the built-in whoami upstream.
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Serve /metrics on this address.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Log filter (stderr).
    #[arg(long, value_name = "FILTER", default_value = "info")]
    log_level: String,
    /// How captchas are shown when the emulator asks for one: `redirect` or `image`.
    #[arg(long, value_name = "MODE", default_value = "redirect")]
    captcha_mode: String,
    /// The emulator's access-token lifetime in seconds. Below the gateway's refresh margin
    /// (300 s) every request refreshes, which shows token refresh at work.
    #[arg(long, value_name = "SECS", default_value_t = 7200)]
    access_token_ttl: u64,
    /// The emulator's refresh-token lifetime in seconds: when it runs out the session ends.
    #[arg(long, value_name = "SECS", default_value_t = 30 * 24 * 3600)]
    refresh_token_ttl: u64,
}

impl ConfigArgs {
    fn load(&self) -> Result<Config, config::ConfigErrors> {
        let flags = [
            ("listen", &self.listen),
            ("public_url", &self.public_url),
            ("env_id", &self.env_id),
            ("api_origin", &self.api_origin),
            ("log_level", &self.log_level),
            ("log_format", &self.log_format),
            ("upstream", &self.upstream),
            ("metrics_listen", &self.metrics_listen),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect::<Vec<_>>();
        let mut problems = Vec::new();
        let env = process_env(&mut problems);
        match config::load(self.config.as_deref(), env, flags) {
            Ok(cfg) if problems.is_empty() => Ok(cfg),
            Ok(_) => Err(config::ConfigErrors(problems)),
            Err(mut errors) => {
                errors.0.extend(problems);
                Err(errors)
            }
        }
    }
}

/// The environment as UTF-8 pairs. Other programs' variables that are not UTF-8 are skipped
/// (`std::env::vars` would panic on them); one of ours that is not UTF-8 is a problem.
fn process_env(problems: &mut Vec<config::ConfigProblem>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        match v.into_string() {
            Ok(v) => out.push((k.to_string(), v)),
            Err(_) => {
                if let Some(rest) = k.strip_prefix(config::ENV_PREFIX) {
                    problems.push(config::ConfigProblem {
                        key: rest.to_ascii_lowercase(),
                        source: Some(config::Source::Env),
                        message: "is not valid UTF-8".into(),
                    });
                }
            }
        }
    }
    out
}

#[derive(Args)]
struct EmulatorArgs {
    /// Address to listen on; port 0 picks a free one (printed on the first stdout line).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8787")]
    listen: String,
    /// Environment id to emulate.
    #[arg(long, value_name = "ENV", default_value = "test-env")]
    env: String,
    /// Users to seed: TOML with [[users]] username, email, phone_number, password, name, groups.
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,
    /// Access-token lifetime in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 7200)]
    access_token_ttl: u64,
    /// Refresh-token lifetime in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30 * 24 * 3600)]
    refresh_token_ttl: u64,
    /// Custom-login key: private_key_id=PUBLIC_PEM_FILE, or the console's tcb_custom_login.json
    /// (repeatable).
    #[arg(long = "ticket-key", value_name = "ID=PUBLIC_PEM_FILE|KEY_JSON")]
    ticket_keys: Vec<String>,
    /// Extra provider id to accept besides wx_open, wx_mp, github and google (repeatable).
    #[arg(long = "provider", value_name = "ID")]
    providers: Vec<String>,
    /// Log filter for the emulator's own logs (stderr).
    #[arg(long, value_name = "FILTER", default_value = "warn")]
    log_level: String,
}

#[derive(Args)]
struct HealthArgs {
    /// The gateway's URL; /ping is appended when the URL has no path.
    url: String,
    /// How long to wait for the answer.
    #[arg(long, value_name = "DURATION", default_value = "3s")]
    timeout: humantime::Duration,
}

#[derive(Args)]
struct TicketArgs {
    /// The console's tcb_custom_login.json.
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
    /// Your user id (4-32 letters, digits or _-#@~=*(){}[]:.,<>+).
    #[arg(long)]
    uid: String,
    /// How often the login state refreshes, in ms (createTicket's `refresh`; default 1 h).
    #[arg(long, value_name = "N")]
    refresh_ms: Option<u64>,
    /// Absolute Unix time in ms after which the login can no longer be refreshed
    /// (createTicket's `expire`; default now + 7 days).
    #[arg(long, value_name = "N")]
    expire_ms: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::CheckConfig(args) => check_config(args),
        Command::Emulator(args) => run_emulator(args),
        Command::Demo(args) => run_demo(args),
        Command::Healthcheck(args) => healthcheck(args),
        Command::Ticket(args) => make_ticket(args),
    }
}

fn check_config(args: ConfigArgs) -> ExitCode {
    match args.load() {
        Ok(cfg) => {
            print!("{}", cfg.redacted_toml());
            eprintln!("configuration OK");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{errors}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: ConfigArgs) -> ExitCode {
    let cfg = match args.load() {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(cfg.log.format, &cfg.log.level);
    run_server(&cfg.listen.to_string(), |listener| {
        server::build(&cfg, listener)
    })
}

/// Binds `listen`, builds the server on it inside an actix system, prints the
/// `listening on http://ADDR` line (with the real port) and runs until a signal.
fn run_server(
    listen: &str,
    build: impl FnOnce(TcpListener) -> std::io::Result<actix_web::dev::Server>,
) -> ExitCode {
    let listener = match TcpListener::bind(listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {listen}: {}", e.kind());
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    actix_web::rt::System::new().block_on(async move {
        let server = match build(listener) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot start: {}", e.kind());
                return ExitCode::FAILURE;
            }
        };
        announce(&addr);
        run_until_signal(server).await
    })
}

fn announce(addr: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on http://{addr}");
    let _ = out.flush();
}

/// Runs `server` until it stops or the process gets SIGINT / SIGTERM (then stops gracefully).
async fn run_until_signal(server: actix_web::dev::Server) -> ExitCode {
    let handle = server.handle();
    let shutdown = async {
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    };
    tokio::select! {
        result = server => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("server failed: {}", e.kind());
                ExitCode::FAILURE
            }
        },
        _ = shutdown => {
            handle.stop(true).await;
            ExitCode::SUCCESS
        }
    }
}

fn run_emulator(args: EmulatorArgs) -> ExitCode {
    telemetry::init(LogFormat::Text, &args.log_level);
    let mut opts = EmulatorOptions::new(args.env.clone());
    opts.access_token_ttl = args.access_token_ttl;
    opts.refresh_token_ttl = args.refresh_token_ttl;
    opts.providers.extend(args.providers.iter().cloned());
    let mut problems = Vec::new();
    if let Some(path) = &args.users {
        match emulator::read_users_file(path) {
            Ok(users) => opts.users = users,
            Err(e) => problems.push(e),
        }
    }
    for spec in &args.ticket_keys {
        match emulator::read_ticket_key(spec) {
            Ok(k) => opts.ticket_keys.push(k),
            Err(e) => problems.push(e),
        }
    }
    if !problems.is_empty() {
        for p in problems {
            eprintln!("{p}");
        }
        return ExitCode::from(2);
    }
    let emu = match Emulator::new(opts, Arc::new(OsEntropy)) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    run_server(&args.listen, |listener| {
        emulator::serve(emu, listener, 2).map(|(_, server)| server)
    })
}

fn run_demo(args: DemoArgs) -> ExitCode {
    telemetry::init(LogFormat::Text, &args.log_level);
    let users = match &args.users {
        Some(path) => match emulator::read_users_file(path) {
            Ok(u) => u,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
        None => cloudbase_gateway::demo::default_users(),
    };
    let bind = |addr: &str| {
        TcpListener::bind(addr).map_err(|e| {
            eprintln!("cannot listen on {addr}: {}", e.kind());
            ExitCode::FAILURE
        })
    };
    let listener = match bind(&args.listen) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let emulator_listener = match bind("127.0.0.1:0") {
        Ok(l) => l,
        Err(code) => return code,
    };
    let Ok(mut addr) = listener.local_addr() else {
        return ExitCode::FAILURE;
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    actix_web::rt::System::new().block_on(async move {
        let mut opts = EmulatorOptions::new("demo-env".to_string());
        opts.users = users.clone();
        opts.access_token_ttl = args.access_token_ttl;
        opts.refresh_token_ttl = args.refresh_token_ttl;
        let emu = match Emulator::new(opts, Arc::new(OsEntropy)) {
            Ok(e) => Arc::new(e),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        let (running, emulator_server) = match emulator::serve(emu, emulator_listener, 1) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("cannot start the emulator: {}", e.kind());
                return ExitCode::FAILURE;
            }
        };
        actix_web::rt::spawn(emulator_server);
        let upstream = match &args.upstream {
            Some(u) => u.clone(),
            None => {
                let started = TcpListener::bind("127.0.0.1:0").and_then(|l| {
                    let a = l.local_addr()?;
                    Ok((a, cloudbase_gateway::demo::whoami_server(l)?))
                });
                match started {
                    Ok((a, server)) => {
                        actix_web::rt::spawn(server);
                        format!("http://{a}")
                    }
                    Err(e) => {
                        eprintln!("cannot start the whoami upstream: {}", e.kind());
                        return ExitCode::FAILURE;
                    }
                }
            }
        };
        let mut flags = vec![
            ("listen", addr.to_string()),
            ("public_url", format!("http://{addr}")),
            ("env_id", "demo-env".to_string()),
            ("api_origin", running.url.clone()),
            ("upstream", upstream),
            ("insecure_cookie", "true".to_string()),
            ("log_level", args.log_level.clone()),
            // Every method of the hosted page, guests included, so the demo shows them all.
            (
                "sign_in_methods",
                "password,email_code,sms_code,anonymous,ticket".to_string(),
            ),
            // The emulator's consent page stands in for the providers.
            ("providers", "github=GitHub,wx_open".to_string()),
            ("captcha_mode", args.captcha_mode.clone()),
        ];
        if let Some(m) = &args.metrics_listen {
            flags.push(("metrics_listen", m.clone()));
        }
        let cfg = match config::load(None, Vec::<(String, String)>::new(), flags) {
            Ok(c) => c,
            Err(errors) => {
                eprint!("{errors}");
                return ExitCode::from(2);
            }
        };
        let server = match server::build(&cfg, listener) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot start: {}", e.kind());
                return ExitCode::FAILURE;
            }
        };
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "listening on http://{addr}");
            let _ = writeln!(out, "emulator on {}", running.url);
            for u in &users {
                let who = u
                    .username
                    .as_deref()
                    .or(u.email.as_deref())
                    .or(u.phone_number.as_deref())
                    .unwrap_or("?");
                match &u.password {
                    // Passwords from a --users file may be real: only the built-in demo
                    // users' (public) passwords are printed.
                    Some(_) if args.users.is_some() => {
                        let _ = writeln!(out, "demo user {who}");
                    }
                    Some(p) => {
                        let _ = writeln!(out, "demo user {who} password {p}");
                    }
                    None => {
                        let _ = writeln!(out, "demo user {who} (no password: sign in with a code)");
                    }
                }
            }
            let _ = writeln!(
                out,
                "codes sent by e-mail or SMS appear at {}/__emulator/outbox",
                running.url
            );
            let _ = writeln!(out, "open http://{addr}/ in a browser");
            let _ = out.flush();
        }
        eprintln!("demo: cookies are sent over plain http (insecure_cookie); for local use only");
        run_until_signal(server).await
    })
}

fn healthcheck(args: HealthArgs) -> ExitCode {
    let mut url = match url::Url::parse(&args.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        _ => {
            eprintln!("healthcheck: expected an http(s) URL");
            return ExitCode::from(2);
        }
    };
    if url.path() == "/" || url.path().is_empty() {
        url.set_path("/ping");
    }
    let timeout: Duration = args.timeout.into();
    actix_web::rt::System::new().block_on(async move {
        let client = awc::Client::builder().timeout(timeout).finish();
        match client.get(url.as_str()).send().await {
            Ok(resp) if resp.status().is_success() => ExitCode::SUCCESS,
            Ok(resp) => {
                eprintln!("healthcheck: {} answered {}", url, resp.status());
                ExitCode::FAILURE
            }
            Err(_) => {
                eprintln!("healthcheck: {url} did not answer");
                ExitCode::FAILURE
            }
        }
    })
}

fn make_ticket(args: TicketArgs) -> ExitCode {
    let result = ticket::read_key_file(&args.key_file).and_then(|key| {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        ticket::create_ticket(&key, &args.uid, now_ms, args.refresh_ms, args.expire_ms)
    });
    match result {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ticket: {e}");
            ExitCode::from(2)
        }
    }
}
