//! Every route and middleware of the gateway, in one place.

use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, HttpMessage, HttpResponse};
use futures_util::future::Either;
use tracing::Instrument;

use super::{account, auth, captcha, forward_auth, login, provider, Gateway, RequestId, PREFIX};

/// The route label recorded for metrics (set by handlers that know better than the path).
#[derive(Debug, Clone)]
pub struct RouteLabel(pub std::sync::Arc<str>);

/// Registers the gateway's endpoints; everything else goes to the proxy.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // The gateway's own endpoints sit in one scope, so a proxied request is matched against
    // the scope's prefix once rather than against every endpoint.
    let own = web::scope(PREFIX)
        .route("", web::get().to(login::login))
        .route("/", web::get().to(login::login))
        .route("/sign_in/password", web::post().to(login::sign_in_password))
        .route("/sign_in/email", web::post().to(login::sign_in_email))
        .route("/sign_in/sms", web::post().to(login::sign_in_sms))
        .route(
            "/sign_in/anonymous",
            web::post().to(login::sign_in_anonymous),
        )
        .route("/code", web::get().to(login::code_entry))
        .route("/code", web::post().to(login::code_submit))
        .route("/code/resend", web::post().to(login::code_resend))
        .route("/sign_up", web::get().to(login::sign_up_page))
        .route("/sign_up", web::post().to(login::sign_up))
        .route("/forgot", web::get().to(login::forgot_page))
        .route("/forgot", web::post().to(login::forgot))
        .route("/signed_out", web::get().to(login::signed_out))
        .route(
            // A fixed path, not `{file}`: a pattern would make the router run a regex for
            // every proxied request.
            "/static/gateway.css",
            web::get().to(login::static_file),
        )
        .route("/start", web::get().to(provider::start))
        .route("/start", web::post().to(provider::start_bind))
        .route("/callback", web::get().to(provider::callback))
        .route("/captcha", web::get().to(captcha::image))
        .route("/captcha", web::post().to(captcha::answer))
        .route("/captcha/callback", web::get().to(captcha::callback))
        .route("/ticket", web::post().to(auth::ticket_sign_in))
        .route("/account", web::get().to(account::account))
        .route("/account/confirm", web::get().to(account::confirm))
        .route("/account/sudo", web::post().to(account::sudo))
        .route("/account/change", web::get().to(account::change_form))
        .route("/account/change", web::post().to(account::change))
        .route("/account/unlink", web::post().to(account::unlink))
        .route("/sign_out", web::get().to(auth::sign_out_page))
        .route("/sign_out", web::post().to(auth::sign_out))
        .route("/auth", web::get().to(forward_auth::auth))
        .route("/userinfo", web::get().to(auth::userinfo))
        // Anything else under the prefix is not ours to proxy.
        .default_service(web::to(not_found));
    cfg.route("/ping", web::get().to(ping))
        .route("/ping", web::head().to(ping))
        .route("/ready", web::get().to(ready))
        .route("/ready", web::head().to(ready))
        .service(own)
        .default_service(web::to(crate::proxy::proxy));
}

/// An unknown endpoint under the prefix: 404, never proxied.
async fn not_found(req: actix_web::HttpRequest, gw: web::Data<Gateway>) -> HttpResponse {
    let inc = super::forms::incoming(&gw, &req);
    super::pages::error_response(&crate::error::GatewayError::NotFound, &inc)
}

async fn ping() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("OK")
}

async fn ready(gw: web::Data<Gateway>) -> HttpResponse {
    match gw.sessions.store().ping().await {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("ready"),
        Err(_) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("session store unreachable"),
    }
}

/// A well-formed client request id is kept (so traces join up); anything else is replaced.
fn valid_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    .then(|| s.to_string())
}

/// The request middleware: request id, a tracing span carrying it, the `X-Request-Id` response
/// header and the request counter by route and status.
pub fn around<S>(
    req: actix_web::dev::ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse, actix_web::Error>> + 'static
where
    S: Service<
        actix_web::dev::ServiceRequest,
        Response = ServiceResponse,
        Error = actix_web::Error,
    >,
    S::Future: 'static,
{
    let gw = req.app_data::<web::Data<Gateway>>().cloned();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(valid_request_id)
        .unwrap_or_else(|| gw.as_ref().map(|g| g.entropy.hex_id()).unwrap_or_default());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
    // Health checks carry whatever host the orchestrator uses (a pod IP): they are exempt.
    let health = matches!(req.path(), "/ping" | "/ready");
    let refusal = gw
        .as_ref()
        .filter(|_| !health)
        .and_then(|g| g.host_refusal(req.request()).map(|e| (g, e)));
    let fut = {
        let _entered = span.enter();
        match refusal {
            None => Either::Left(srv.call(req)),
            Some((g, e)) => {
                let inc = g.incoming(req.request());
                static HINT: crate::telemetry::Throttle = crate::telemetry::Throttle::new();
                if matches!(e, crate::error::GatewayError::UnknownHost)
                    && HINT.ready(g.clock.unix_secs(), 60)
                {
                    tracing::warn!(
                        host = %inc.host,
                        "request for a host this gateway does not serve refused; add it to allowed_hosts, or give the proxy in front `Host` as the browser sent it"
                    );
                }
                let resp = super::pages::error_response(&e, &inc);
                Either::Right(std::future::ready(Ok(req.into_response(resp))))
            }
        }
    };
    async move {
        let mut res = fut.await?;
        if let Ok(v) = HeaderValue::from_str(&id) {
            res.headers_mut()
                .insert(HeaderName::from_static("x-request-id"), v);
        }
        let status = res.status().as_u16();
        let route = res
            .request()
            .extensions()
            .get::<RouteLabel>()
            .map(|r| r.0.clone())
            .or_else(|| res.request().match_pattern().map(std::sync::Arc::from))
            .unwrap_or_else(|| std::sync::Arc::from("unmatched"));
        if let Some(gw) = gw {
            gw.metrics.request(&route, status);
        }
        tracing::debug!(status, "answered");
        Ok(res)
    }
    .instrument(span)
}
