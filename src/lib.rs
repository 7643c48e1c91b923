//! CloudBase Gateway: an authenticating edge gateway for web applications whose users sign in
//! with Tencent CloudBase auth. The README describes the layout and the commands.
//!
//! Modules: [`config`] (validated configuration), [`cloudbase`] (the API client),
//! [`emulator`] (an independent in-process CloudBase), [`ticket`] (custom-login tickets),
//! [`clock`] and [`entropy`] (injected time and randomness), [`secret`] (redacted strings),
//! [`server`] (the gateway's HTTP server), [`telemetry`] (logging), [`jwt`] (RS256 JWTs).

pub mod clock;
pub mod cloudbase;
pub mod config;
pub mod emulator;
pub mod entropy;
pub mod jwt;
pub mod secret;
pub mod server;
pub mod telemetry;
pub mod ticket;
