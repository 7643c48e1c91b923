//! An in-process emulator of the CloudBase auth API (`/auth/v1/...`), independent of the
//! client in `crate::cloudbase`: it shares no request or response types with it. Used by
//! `demo`, by the tests, and by users testing their apps offline. See spec §3–§8 and §11.
//!
//! [`service`] holds the behaviour, [`http`] the routes and test hooks, [`keys`] the RSA
//! keys and JWTs, [`pages`] the consent and captcha pages.

pub mod error;
pub mod http;
pub mod keys;
pub mod pages;
pub mod service;

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use actix_web::{App, HttpServer};

pub use service::{Emulator, EmulatorOptions, SeedUser, UsersFile};

use crate::entropy::SharedEntropy;

/// Reads a users file (`[[users]]` with username, email, phone_number, password, name,
/// groups, status). Fails with a message naming the file and the problem.
pub fn read_users_file(path: &Path) -> Result<Vec<SeedUser>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read users file {}: {}", path.display(), e.kind()))?;
    let file: UsersFile = toml::from_str(&text)
        .map_err(|e| format!("users file {}: {}", path.display(), e.message()))?;
    Ok(file.users)
}

/// Reads a ticket key given as `ID=PUBLIC_PEM_FILE`, or as the console's
/// `tcb_custom_login.json` (`FILE` or `ID=FILE`; the id defaults to its `private_key_id` and the
/// public key is derived from its private key). Returns the id and the PEM.
pub fn read_ticket_key(spec: &str) -> Result<(String, String), String> {
    let (id, file) = match spec.split_once('=') {
        Some((id, f)) if !id.is_empty() && !f.is_empty() => (Some(id), f),
        _ => (None, spec),
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("--ticket-key {spec}: cannot read {file}: {}", e.kind()))?;
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
        let pem = json
            .get("private_key")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| format!("--ticket-key {spec}: JSON without private_key (expected tcb_custom_login.json)"))?;
        let id = id
            .map(str::to_string)
            .or_else(|| {
                json.get("private_key_id")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string)
            })
            .ok_or_else(|| format!("--ticket-key {spec}: no private_key_id"))?;
        return Ok((id, pem.to_string()));
    }
    let id = id.ok_or_else(|| {
        format!("--ticket-key {spec}: expected ID=PUBLIC_PEM_FILE or a tcb_custom_login.json")
    })?;
    Ok((id.to_string(), text))
}

/// A running emulator server.
pub struct RunningEmulator {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The emulator itself, for tests that inspect or steer it directly.
    pub emulator: Arc<Emulator>,
    /// Stops the server.
    pub handle: actix_web::dev::ServerHandle,
}

/// Starts an emulator on `listener` with `workers` worker threads. The returned server must be
/// awaited or spawned on the actix runtime.
pub fn serve(
    emulator: Arc<Emulator>,
    listener: TcpListener,
    workers: usize,
) -> std::io::Result<(RunningEmulator, actix_web::dev::Server)> {
    let addr = listener.local_addr()?;
    let data = http::data(emulator.clone());
    let server =
        HttpServer::new(move || App::new().app_data(data.clone()).configure(http::configure))
            .workers(workers.max(1))
            .disable_signals()
            .listen(listener)?
            .run();
    Ok((
        RunningEmulator {
            url: format!("http://{addr}"),
            emulator,
            handle: server.handle(),
        },
        server,
    ))
}

/// Builds an emulator from `opts` and serves it on 127.0.0.1 at an ephemeral port, spawned
/// on the current actix runtime. For tests and `demo`.
pub fn spawn(opts: EmulatorOptions, entropy: SharedEntropy) -> std::io::Result<RunningEmulator> {
    let emulator = Arc::new(
        Emulator::new(opts, entropy)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?,
    );
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let (running, server) = serve(emulator, listener, 1)?;
    actix_web::rt::spawn(server);
    Ok(running)
}
