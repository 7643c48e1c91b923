//! CloudBase Gateway: an authenticating edge gateway for web applications whose users sign in
//! with Tencent CloudBase auth. The README describes the layout and the commands.
//!
//! Modules: [`config`] (validated configuration), [`cloudbase`] (the API client),
//! [`emulator`] (an independent in-process CloudBase), [`ticket`] (custom-login tickets),
//! [`clock`] and [`entropy`] (injected time and randomness), [`secret`] (redacted strings),
//! [`server`] (builds the gateway's HTTP servers), [`web`] (handlers and pages), [`proxy`]
//! (reverse proxy and route policies), [`session`] (store, cookie, refresh), [`flow`]
//! (return-URL validator and flow store), [`flows`] (the sign-in flows), [`i18n`] (page
//! languages), [`ratelimit`] (sign-in rate limits), [`keyring`] (derived keys), [`metrics`], [`error`] (the request
//! path's error type), [`telemetry`] (logging), [`jwt`] (RS256 JWTs).

pub mod aead;
pub mod clock;
pub mod cloudbase;
pub mod config;
pub mod demo;
pub mod emulator;
pub mod entropy;
pub mod error;
pub mod flow;
pub mod flows;
pub mod hosts;
pub mod i18n;
pub mod jwt;
pub mod keyring;
pub mod metrics;
pub mod proxy;
pub mod ratelimit;
pub mod secret;
pub mod server;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod ticket;
pub mod web;
