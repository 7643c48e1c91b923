//! The reverse proxy: route lookup, policy check, header hygiene, bearer injection and
//! streaming with `awc`, websockets included. Bodies stream both ways untouched (no
//! decompression); a refused connection gives 502, a deadline 504.

pub mod headers;
pub mod policy;
mod upstream;

use std::time::Instant;

use actix_web::http::header::{self, HeaderMap};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use crate::cloudbase::client::CallContext;
use crate::config::Policy;
use crate::error::GatewayError;
use crate::session::manager::Loaded;
use crate::web::pages;
use crate::web::routes::RouteLabel;
use crate::web::{Gateway, Incoming, Worker};
use headers::Forwarding;
use policy::{normalize_path, Decision};

/// The default service: every request that is not one of the gateway's endpoints.
pub async fn proxy(
    req: HttpRequest,
    body: web::Payload,
    gw: web::Data<Gateway>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let inc = gw.incoming(&req);
    match handle(&req, body, &gw, &worker, &inc).await {
        Ok(resp) => resp,
        Err(e) => pages::error_response(&e, &inc),
    }
}

async fn handle(
    req: &HttpRequest,
    body: web::Payload,
    gw: &Gateway,
    worker: &Worker,
    inc: &Incoming,
) -> Result<HttpResponse, GatewayError> {
    // TRACE would echo the request, bearer included, back to whoever sent it; CONNECT asks for
    // a tunnel. Neither is ever passed on.
    if matches!(req.method().as_str(), "TRACE" | "CONNECT") {
        return Err(GatewayError::MethodNotAllowed);
    }
    // `OPTIONS *` and other targets that are not a path have no route.
    if !req.path().starts_with('/') {
        return Err(GatewayError::BadRequest("The address is not a path."));
    }
    let limits = &gw.config.proxy;
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > limits.max_header_size {
        return Err(GatewayError::HeadersTooLarge);
    }
    if upstream::content_length(req).is_some_and(|n| n > limits.max_body_size) {
        return Err(GatewayError::BodyTooLarge);
    }
    let path = normalize_path(req.path())
        .ok_or(GatewayError::BadRequest("The address is not a valid path."))?;
    if crate::web::is_own_path(&path) {
        return Err(GatewayError::NotFound);
    }
    let (index, route) = gw
        .routes
        .find(&inc.host, &path)
        .ok_or(GatewayError::NotFound)?;
    req.extensions_mut()
        .insert(RouteLabel(gw.routes.label(index).clone()));

    let lookup = match gw.session(req, worker).await {
        // A public page does not need the session: serve it anonymously while CloudBase or
        // the session store is down rather than failing it (the cookie is left alone).
        Err(GatewayError::CloudBaseUnavailable | GatewayError::Store(_))
            if route.policy == Policy::Public =>
        {
            crate::web::SessionLookup {
                session: None,
                set_cookie: None,
            }
        }
        other => other?,
    };
    let mut session = lookup.session;
    let mut set_cookie = lookup.set_cookie;

    // Only navigations get an automatic anonymous session: a script or bot without a cookie
    // must not be able to mint CloudBase users (and store entries) by the request.
    let ip_key = inc
        .client_ip
        .map(crate::ratelimit::client_key)
        .unwrap_or_default();
    // Over the guest limit the visitor is asked to sign in, as without the option.
    let permits = if session.is_none()
        && inc.navigation
        && route.anonymous_auto_sign_in
        && matches!(route.policy, Policy::Authenticated)
    {
        match gw.limits.anonymous(&ip_key).await {
            Ok(p) => Some(p),
            Err(crate::ratelimit::LimitError::Refused(_)) => None,
            Err(crate::ratelimit::LimitError::Store(e)) => return Err(e.into()),
        }
    } else {
        None
    };
    if let Some(permits) = permits {
        let device_id = gw.sessions.new_device_id();
        // Every CloudBase call gets its own x-request-id, as the SDK does; the request span
        // ties them to this request in the logs.
        let ctx = CallContext::new(device_id.clone());
        match worker.cloudbase.signin_anonymously(&ctx, false).await {
            Ok(creds) => {
                let started = gw
                    .sessions
                    .start(&creds, Default::default(), &device_id)
                    .await?;
                gw.metrics.sign_in("anonymous_auto");
                set_cookie = Some(
                    gw.sessions
                        .cookies()
                        .session(started.cookie_value, started.max_age_secs),
                );
                session = Some(Loaded {
                    key: started.key,
                    record: started.record,
                });
            }
            // Anonymous sign-in switched off or CloudBase down: the visitor is asked to sign
            // in, which is what the route would do without the option.
            Err(e) => {
                gw.limits.refund(permits).await;
                tracing::warn!(
                    error = e.code(),
                    request_id = e.request_id(),
                    "automatic anonymous sign-in failed; asking the visitor to sign in"
                )
            }
        }
    }

    let record = session.as_ref().map(|l| l.record.as_ref());
    let (_, decision) = gw
        .routes
        .check(&inc.host, req.path(), &path, record)
        .ok_or(GatewayError::NotFound)?;
    match decision {
        Decision::Allow => {}
        Decision::SignIn if inc.navigation => {
            let mut resp = pages::redirect(&gw.login_url(req, inc)).finish();
            if let Some(c) = &set_cookie {
                let _ = resp.add_cookie(c);
            }
            return Ok(resp);
        }
        Decision::SignIn => {
            let mut resp = pages::json_error(&GatewayError::Unauthenticated);
            if let Some(c) = &set_cookie {
                let _ = resp.add_cookie(c);
            }
            return Ok(resp);
        }
        Decision::Forbidden => return Err(GatewayError::Forbidden),
    }

    let route = gw.routes.get(index);
    // The policy saw `..` resolved, but the upstream would resolve it against its base path
    // and climb out of it: such a path cannot be passed on as sent.
    if route.upstream.path() != "/" && policy::has_dot_segment(req.path()) {
        return Err(GatewayError::BadRequest(
            "The address has . or .. segments, which this application cannot be sent.",
        ));
    }
    let fwd = Forwarding {
        peer: inc.peer,
        trusted: inc.trusted,
        proto: &inc.proto,
        host: &inc.authority,
        request_id: &inc.request_id,
    };
    let record = session.as_ref().map(|l| l.record.as_ref());
    let out_headers = headers::upstream_request_headers(
        req.headers(),
        |name| gw.sessions.cookies().is_ours(name),
        &fwd,
        record,
    );
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let base = route.upstream.as_str().trim_end_matches('/');

    let started = Instant::now();
    let is_websocket = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let mut resp = if is_websocket {
        let host = gw
            .config
            .proxy
            .pass_host_header
            .then_some(inc.authority.as_str());
        websocket(req, body, worker, format!("{base}{pq}"), out_headers, host).await?
    } else {
        upstream::forward(
            req,
            body,
            gw,
            worker,
            format!("{base}{pq}"),
            out_headers,
            inc,
        )
        .await?
    };
    gw.metrics.proxied(started.elapsed());
    if let Some(c) = &set_cookie {
        let _ = resp.add_cookie(c);
    }
    Ok(resp)
}

/// Opens the websocket upstream first (so a refusal is a 502), then completes the client's
/// handshake and bridges frames both ways until either side closes.
async fn websocket(
    req: &HttpRequest,
    body: web::Payload,
    worker: &Worker,
    url: String,
    out_headers: HeaderMap,
    host: Option<&str>,
) -> Result<HttpResponse, GatewayError> {
    let url = if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url
    };
    let mut up = worker.http.ws(url).max_frame_size(1 << 20);
    for (k, v) in out_headers.iter() {
        if !k.as_str().starts_with("sec-websocket-") {
            up = up.header(k.clone(), v.clone());
        }
    }
    let offered: Vec<String> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if !offered.is_empty() {
        up = up.protocols(&offered);
    }
    if let Some(host) = host {
        up = up.header(header::HOST, host.to_string());
    }
    let (up_resp, framed) = up.connect().await.map_err(|e| match e {
        awc::error::WsClientError::SendRequest(awc::error::SendRequestError::Timeout) => {
            GatewayError::UpstreamTimeout
        }
        _ => GatewayError::UpstreamUnreachable,
    })?;
    let chosen = up_resp
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let protocols: Vec<&str> = chosen.as_deref().into_iter().collect();
    let (resp, session, messages) = actix_ws::handle_with_protocols(req, body, &protocols)
        .map_err(|_| GatewayError::BadRequest("This is not a valid websocket handshake."))?;
    actix_web::rt::spawn(bridge(session, messages.max_frame_size(1 << 20), framed));
    Ok(resp)
}

async fn bridge<U>(
    mut session: actix_ws::Session,
    mut client: actix_ws::MessageStream,
    mut upstream: U,
) where
    U: futures_util::Stream<Item = Result<awc::ws::Frame, actix_ws::ProtocolError>>
        + futures_util::Sink<awc::ws::Message, Error = actix_ws::ProtocolError>
        + Unpin,
{
    use actix_ws::{CloseCode, Message};
    use awc::ws::Frame;
    use futures_util::SinkExt;
    let reason = loop {
        tokio::select! {
            m = client.recv() => match m {
                Some(Ok(Message::Close(r))) => {
                    let _ = upstream.send(Message::Close(r.clone())).await;
                    break r;
                }
                Some(Ok(Message::Nop)) => {}
                Some(Ok(msg)) => {
                    if upstream.send(msg).await.is_err() {
                        break Some(CloseCode::Away.into());
                    }
                }
                Some(Err(_)) | None => {
                    let _ = upstream.send(Message::Close(None)).await;
                    break None;
                }
            },
            f = upstream.next() => {
                let sent = match f {
                    Some(Ok(Frame::Text(b))) => match bytestring::ByteString::try_from(b) {
                        Ok(s) => session.text(s).await,
                        Err(_) => break Some(CloseCode::Invalid.into()),
                    },
                    Some(Ok(Frame::Binary(b))) => session.binary(b).await,
                    Some(Ok(Frame::Continuation(item))) => session.continuation(item).await,
                    Some(Ok(Frame::Ping(b))) => session.ping(&b).await,
                    Some(Ok(Frame::Pong(b))) => session.pong(&b).await,
                    Some(Ok(Frame::Close(r))) => break r,
                    Some(Err(_)) | None => break Some(CloseCode::Away.into()),
                };
                if sent.is_err() {
                    let _ = upstream.send(Message::Close(None)).await;
                    return;
                }
            }
        }
    };
    let _ = session.close(reason).await;
    let _ = upstream.close().await;
}
