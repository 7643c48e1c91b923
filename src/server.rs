//! The gateway's HTTP server. Today it answers the health endpoints (`/ping`, `/ready`); the
//! request path (sessions, proxy, sign-in pages) is built on it by the gateway-core work.

use std::net::TcpListener;

use actix_web::{web, App, HttpResponse, HttpServer};

use crate::config::Config;

/// Registers the health routes: `/ping` (alive) and `/ready` (able to serve).
pub fn configure_health(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/ping",
        web::get().to(|| async { HttpResponse::Ok().content_type("text/plain").body("OK") }),
    )
    .route(
        "/ready",
        web::get().to(|| async { HttpResponse::Ok().content_type("text/plain").body("ready") }),
    );
}

/// Builds the gateway server on `listener`. The returned server must be awaited.
pub fn build(config: &Config, listener: TcpListener) -> std::io::Result<actix_web::dev::Server> {
    tracing::info!(
        listen = %listener.local_addr()?,
        public_url = %config.public_url,
        env_id = %config.cloudbase.env_id,
        api_origin = %config.cloudbase.api_origin,
        "gateway starting"
    );
    Ok(HttpServer::new(|| App::new().configure(configure_health))
        .disable_signals()
        .listen(listener)?
        .run())
}
