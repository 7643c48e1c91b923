//! CloudBase Gateway: an authenticating edge gateway for web applications whose users sign in
//! with Tencent CloudBase auth. See `docs/` and the README for the architecture.
//!
//! Modules: [`config`] (validated configuration), [`cloudbase`] (the API client),
//! [`emulator`] (an independent in-process CloudBase), [`ticket`] (custom-login tickets),
//! [`clock`] and [`entropy`] (injected time and randomness), [`secret`] (redacted strings),
//! [`server`] (the gateway's HTTP server), [`telemetry`] (logging).

pub mod clock;
pub mod cloudbase;
pub mod config;
pub mod emulator;
pub mod entropy;
pub mod secret;
pub mod server;
pub mod telemetry;
pub mod ticket;
