//! The emulator's HTTP surface: `/auth/...` like CloudBase, the consent and captcha pages,
//! and the `/__emulator/*` test hooks (stable: other tests and tools rely on their shapes).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix_web::http::header::{self, HeaderMap};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::EmuError;
use super::pages::{CaptchaPage, ConsentPage, MessagePage};
use super::service::{Call, Emulator, Fault, Recorded};

/// Registers every route. Expects `web::Data<Emulator>` in the app data.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/ping",
        web::get().to(|| async { HttpResponse::Ok().body("OK") }),
    )
    .route("/__emulator/outbox", web::get().to(outbox))
    .route("/__emulator/settings", web::post().to(settings))
    .route("/__emulator/settings", web::get().to(get_settings))
    .route("/__emulator/faults", web::post().to(add_fault))
    .route("/__emulator/faults", web::delete().to(clear_faults))
    .route("/__emulator/requests", web::get().to(requests))
    .route("/__emulator/requests", web::delete().to(clear_requests))
    .route("/__emulator/captchas", web::get().to(captchas))
    .route("/__emulator/users", web::get().to(users))
    .route("/__emulator/clock", web::post().to(clock))
    .route("/__emulator/oauth/authorize", web::get().to(consent_page))
    .route(
        "/__emulator/oauth/authorize",
        web::post().to(consent_decision),
    )
    .route("/__emulator/captcha", web::get().to(captcha_page))
    .route("/__emulator/captcha", web::post().to(captcha_decision))
    .route("/auth/{tail:.*}", web::route().to(auth));
}

fn json_response(status: u16, body: &Value) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    )
    .content_type("application/json")
    .body(body.to_string())
}

fn error_response(e: &EmuError) -> HttpResponse {
    json_response(e.status, &e.body())
}

fn html(status: actix_web::http::StatusCode, page: impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(body),
        Err(_) => HttpResponse::InternalServerError().body("template error"),
    }
}

fn bad_page(message: &str) -> HttpResponse {
    html(
        actix_web::http::StatusCode::BAD_REQUEST,
        MessagePage {
            title: "Request refused",
            message,
        },
    )
}

/// Largest `/auth/...` request body the emulator reads.
const MAX_BODY: usize = 256 * 1024;
/// Largest test-hook body (a fault's `raw_body` may be big on purpose).
const MAX_HOOK_BODY: usize = 8 << 20;

/// Reads the whole body, up to [`MAX_BODY`]. Reading by hand (rather than through the `Bytes`
/// extractor) keeps even an oversized or broken upload answered with CloudBase-style JSON.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::Bytes, EmuError> {
    use futures_util::StreamExt;
    let mut buf = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|_| EmuError::invalid_argument("request body could not be read"))?;
        if buf.len() + chunk.len() > limit {
            return Err(EmuError::invalid_argument("request body too large"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Reads and parses a JSON object body of at most `limit` bytes.
async fn json_body(payload: web::Payload, limit: usize) -> Result<Value, EmuError> {
    parse_body(&read_body(payload, limit).await?)
}

/// Parses a body as JSON whatever the Content-Type (the SDK sends `text/plain`); empty is `{}`.
fn parse_body(bytes: &[u8]) -> Result<Value, EmuError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(EmuError::invalid_argument(
            "request body must be a JSON object",
        )),
        Err(_) => Err(EmuError::invalid_argument("request body is not valid JSON")),
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn record(emu: &Emulator, req: &HttpRequest) {
    let mut headers = BTreeMap::new();
    for (name, value) in req.headers() {
        let name = name.as_str().to_ascii_lowercase();
        let value = String::from_utf8_lossy(value.as_bytes()).to_string();
        let value = if name == "authorization" {
            value
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string()
        } else {
            value
        };
        headers
            .entry(name)
            .and_modify(|v: &mut String| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    emu.record(Recorded {
        method: req.method().to_string(),
        path: req.path().to_string(),
        query: req.query_string().to_string(),
        headers,
    });
}

/// The emulator's own origin as the caller addressed it. Only the Host header counts:
/// `Forwarded` / `X-Forwarded-*` from a caller must not steer where its pages point.
fn origin(req: &HttpRequest) -> String {
    let host = header_str(req.headers(), "host")
        .map(str::to_string)
        .unwrap_or_else(|| req.app_config().host().to_string());
    format!("http://{host}")
}

/// CORS for the browser build of the SDK, which sends `x-device-id`, `x-request-id` and
/// friends cross-origin: every origin is allowed (this is a local test double).
fn with_cors(req: &HttpRequest, mut resp: HttpResponse) -> HttpResponse {
    if let Some(origin) = req.headers().get(header::ORIGIN).cloned() {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, header::HeaderValue::from_static("Origin"));
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            header::HeaderValue::from_static("true"),
        );
    }
    resp
}

fn preflight(req: &HttpRequest) -> HttpResponse {
    let mut resp = HttpResponse::NoContent();
    resp.insert_header((
        header::ACCESS_CONTROL_ALLOW_METHODS,
        "GET, POST, PATCH, DELETE, OPTIONS",
    ))
    .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"));
    if let Some(requested) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        resp.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone()));
    }
    with_cors(req, resp.finish())
}

async fn auth(req: HttpRequest, payload: web::Payload, emu: web::Data<Emulator>) -> HttpResponse {
    if req.method() == actix_web::http::Method::OPTIONS {
        return preflight(&req);
    }
    let resp = answer(&req, payload, &emu).await;
    with_cors(&req, resp)
}

async fn answer(req: &HttpRequest, payload: web::Payload, emu: &Emulator) -> HttpResponse {
    record(emu, req);
    if let Some(fault) = emu.take_fault(req.path()) {
        if !fault.delay.is_zero() {
            tokio::time::sleep(fault.delay).await;
        }
        if fault.drop {
            // The body fails before its first byte: actix closes the connection without an
            // answer, as a crashing load balancer would.
            let broken = futures_util::stream::once(async {
                Err::<web::Bytes, actix_web::Error>(actix_web::error::ErrorServiceUnavailable(
                    "dropped",
                ))
            });
            return HttpResponse::Ok()
                .content_type("application/json")
                .streaming(broken);
        }
        if let Some((status, body, is_json)) = fault.answer {
            let status = actix_web::http::StatusCode::from_u16(status)
                .unwrap_or(actix_web::http::StatusCode::SERVICE_UNAVAILABLE);
            let ct = if is_json {
                "application/json"
            } else {
                "text/html"
            };
            return HttpResponse::build(status).content_type(ct).body(body);
        }
    }
    let body = match json_body(payload, MAX_BODY).await {
        Ok(v) => v,
        Err(e) => return error_response(&e),
    };
    let query: HashMap<String, String> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let auth_header = header_str(req.headers(), "authorization");
    let bearer = auth_header
        .and_then(|a| {
            a.strip_prefix("Bearer ")
                .or_else(|| a.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string());
    let captcha_token = query
        .get("captcha_token")
        .filter(|s| !s.is_empty())
        .cloned()
        .or_else(|| header_str(req.headers(), "x-captcha-token").map(str::to_string));
    let call = Call {
        device_id: header_str(req.headers(), "x-device-id").map(str::to_string),
        bearer,
        captcha_token,
        query,
        body,
        origin: origin(req),
    };
    match emu.handle(req.method().as_str(), req.path(), &call) {
        Ok(v) => json_response(200, &v),
        Err(e) => error_response(&e),
    }
}

async fn outbox(emu: web::Data<Emulator>) -> HttpResponse {
    json_response(200, &emu.outbox())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    captcha_required: Option<bool>,
    anonymous_enabled: Option<bool>,
    signup_enabled: Option<bool>,
}

async fn settings(payload: web::Payload, emu: web::Data<Emulator>) -> HttpResponse {
    let parsed = json_body(payload, MAX_HOOK_BODY).await.and_then(|v| {
        serde_json::from_value::<SettingsBody>(v).map_err(|_| {
            EmuError::invalid_argument(
                "expected {captcha_required?, anonymous_enabled?, signup_enabled?} booleans",
            )
        })
    });
    match parsed {
        Ok(s) => json_response(
            200,
            &json!(emu.update_settings(s.captcha_required, s.anonymous_enabled, s.signup_enabled)),
        ),
        Err(e) => error_response(&e),
    }
}

async fn get_settings(emu: web::Data<Emulator>) -> HttpResponse {
    json_response(200, &json!(emu.settings()))
}

async fn add_fault(payload: web::Payload, emu: web::Data<Emulator>) -> HttpResponse {
    let parsed = json_body(payload, MAX_HOOK_BODY).await.and_then(|v| {
        serde_json::from_value::<Fault>(v).map_err(|_| {
            EmuError::invalid_argument(
                "expected {path?, error?, error_code?, status?, delay_ms?, raw_body?, times?}",
            )
        })
    });
    match parsed {
        Ok(f) => {
            let pending = emu.add_fault(f);
            json_response(200, &json!({ "pending": pending }))
        }
        Err(e) => error_response(&e),
    }
}

async fn clear_faults(emu: web::Data<Emulator>) -> HttpResponse {
    emu.clear_faults();
    json_response(200, &json!({}))
}

async fn requests(emu: web::Data<Emulator>) -> HttpResponse {
    json_response(200, &emu.requests())
}

async fn clear_requests(emu: web::Data<Emulator>) -> HttpResponse {
    emu.clear_requests();
    json_response(200, &json!({}))
}

async fn captchas(emu: web::Data<Emulator>) -> HttpResponse {
    json_response(200, &emu.captchas())
}

async fn users(emu: web::Data<Emulator>) -> HttpResponse {
    json_response(200, &emu.users())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockBody {
    advance_secs: u64,
}

async fn clock(payload: web::Payload, emu: web::Data<Emulator>) -> HttpResponse {
    let parsed = json_body(payload, MAX_HOOK_BODY).await.and_then(|v| {
        serde_json::from_value::<ClockBody>(v)
            .map_err(|_| EmuError::invalid_argument("expected {\"advance_secs\": N}"))
    });
    match parsed {
        Ok(c) if c.advance_secs > super::service::MAX_TTL => {
            error_response(&EmuError::invalid_argument(format!(
                "advance_secs must be at most {}",
                super::service::MAX_TTL
            )))
        }
        Ok(c) => {
            emu.advance_clock(std::time::Duration::from_secs(c.advance_secs));
            json_response(200, &json!({ "now": emu.now_secs() }))
        }
        Err(e) => error_response(&e),
    }
}

#[derive(Deserialize)]
struct ConsentQuery {
    #[serde(default)]
    provider_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    state: String,
}

async fn consent_page(q: web::Query<ConsentQuery>, emu: web::Data<Emulator>) -> HttpResponse {
    if !emu.has_provider(&q.provider_id) || url::Url::parse(&q.redirect_uri).is_err() {
        return bad_page("Unknown provider or invalid redirect_uri.");
    }
    html(
        actix_web::http::StatusCode::OK,
        ConsentPage {
            provider_id: &q.provider_id,
            redirect_uri: &q.redirect_uri,
            state: &q.state,
            login: "provider-user",
        },
    )
}

#[derive(Deserialize)]
struct ConsentForm {
    #[serde(default)]
    provider_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    decision: String,
}

fn redirect_with(base: &str, params: &[(&str, &str)]) -> Option<HttpResponse> {
    let mut url = url::Url::parse(base).ok()?;
    {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in params {
            pairs.append_pair(k, v);
        }
    }
    Some(
        HttpResponse::Found()
            .insert_header((header::LOCATION, url.as_str()))
            .finish(),
    )
}

async fn consent_decision(form: web::Form<ConsentForm>, emu: web::Data<Emulator>) -> HttpResponse {
    let f = form.into_inner();
    if !emu.has_provider(&f.provider_id) {
        return bad_page("Unknown provider.");
    }
    let response = match f.decision.as_str() {
        "approve" => match emu.grant_provider_code(&f.provider_id, &f.redirect_uri, &f.login) {
            Some(code) => redirect_with(&f.redirect_uri, &[("code", &code), ("state", &f.state)]),
            None => None,
        },
        "deny" => redirect_with(
            &f.redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "the user denied the request"),
                ("state", &f.state),
            ],
        ),
        _ => return bad_page("Choose approve or deny."),
    };
    response.unwrap_or_else(|| bad_page("Invalid redirect_uri."))
}

#[derive(Deserialize)]
struct CaptchaQuery {
    #[serde(default)]
    id: String,
}

async fn captcha_page(q: web::Query<CaptchaQuery>, emu: web::Data<Emulator>) -> HttpResponse {
    if emu.captcha_session(&q.id).is_none() {
        return bad_page("This captcha expired or was already used.");
    }
    html(actix_web::http::StatusCode::OK, CaptchaPage { id: &q.id })
}

#[derive(Deserialize)]
struct CaptchaForm {
    #[serde(default)]
    id: String,
    #[serde(default)]
    decision: String,
}

async fn captcha_decision(form: web::Form<CaptchaForm>, emu: web::Data<Emulator>) -> HttpResponse {
    let pass = match form.decision.as_str() {
        "pass" => true,
        "cancel" => false,
        _ => return bad_page("Choose pass or cancel."),
    };
    let Some((session, token)) = emu.finish_captcha(&form.id, pass) else {
        return bad_page("This captcha expired or was already used.");
    };
    let response = match token {
        Some(t) => redirect_with(
            &session.redirect_uri,
            &[
                ("captcha_token", &t),
                ("expires_in", "600"),
                ("state", &session.state),
            ],
        ),
        None => redirect_with(
            &session.redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "the user cancelled the captcha"),
                ("state", &session.state),
            ],
        ),
    };
    response.unwrap_or_else(|| bad_page("Invalid redirect_uri."))
}

/// Shares an emulator with the app factory.
pub fn data(emu: Arc<Emulator>) -> web::Data<Emulator> {
    web::Data::from(emu)
}
