//! Sending a proxied request upstream and streaming the answer back: the client's body under
//! its size limit and idle deadline, one retry on a fresh connection for a bodiless safe
//! request (GET, HEAD, OPTIONS) whose pooled connection turned out to be closed, and never a
//! connection back in the pool once the upstream's answer said it closes.

use actix_web::body::{BodyStream, SizedStream};
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::{Method, StatusCode, Version};
use actix_web::{web, HttpRequest, HttpResponse};
use awc::error::{ConnectError, SendRequestError};
use futures_util::{StreamExt, TryStreamExt};

use super::headers;
use crate::error::GatewayError;
use crate::web::{Gateway, Incoming, Worker};

/// The request's declared body length.
pub(super) fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Sends the request upstream and streams the answer back.
///
/// Fails with [`GatewayError::UpstreamTimeout`], [`GatewayError::UpstreamUnreachable`], or the
/// client's body error (too large, too slow, malformed).
pub(super) async fn forward(
    req: &HttpRequest,
    body: web::Payload,
    gw: &Gateway,
    worker: &Worker,
    url: String,
    out_headers: HeaderMap,
    inc: &Incoming,
) -> Result<HttpResponse, GatewayError> {
    let content_length = content_length(req);
    let started = std::time::Instant::now();
    let build = |client: &awc::Client, timeout: std::time::Duration| {
        let mut up = client
            .request(req.method().clone(), url.as_str())
            .timeout(timeout)
            .no_decompress();
        for (k, v) in out_headers.iter() {
            // awc answers `Expect: 100-continue` itself.
            if k != header::EXPECT {
                up = up.append_header((k.clone(), v.clone()));
            }
        }
        if gw.config.proxy.pass_host_header {
            up = up.insert_header((header::HOST, inc.authority.clone()));
        }
        up
    };
    let fault = BodyFault::default();
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    let has_body = chunked || content_length.is_some_and(|n| n > 0);
    let sent = if has_body {
        let limited = guarded_body(
            body,
            gw.config.proxy.max_body_size,
            gw.config.proxy.client_body_timeout,
            fault.clone(),
        )
        .await?;
        let up = build(&worker.http, gw.config.proxy.timeout);
        match content_length {
            Some(n) => up.send_body(SizedStream::new(n, limited)).await,
            None => up.send_stream(limited).await,
        }
    } else {
        let sent = build(&worker.http, gw.config.proxy.timeout)
            .send_body(empty(content_length))
            .await;
        let left = gw.config.proxy.timeout.saturating_sub(started.elapsed());
        match sent {
            // The upstream closed a pooled connection just as it was reused (it answered
            // HTTP/1.0 and hung up, or its keep-alive ran out) before answering anything: a
            // safe request is sent once more, on a connection of its own, within what is left
            // of its deadline, as nginx's `proxy_next_upstream error` and Go's transport do.
            Err(e) if safe(req.method()) && before_any_answer(&e) && !left.is_zero() => {
                tracing::debug!(
                    error_kind = error_kind(&e),
                    "upstream connection failed before any answer; retrying on a fresh one"
                );
                build(&worker.http_fresh, left)
                    .insert_header((header::CONNECTION, "close"))
                    .send_body(empty(content_length))
                    .await
            }
            other => other,
        }
    };
    let upstream = sent.map_err(|e| match e {
        SendRequestError::Timeout | SendRequestError::Connect(ConnectError::Timeout) => {
            GatewayError::UpstreamTimeout
        }
        // The client's body stopped the request: say why (over the size limit, too slow, or
        // not well-formed); it cannot go through as sent.
        SendRequestError::Body(_) => fault.error(),
        e => {
            tracing::warn!(error_kind = error_kind(&e), "upstream request failed");
            GatewayError::UpstreamUnreachable
        }
    })?;
    let mut b = HttpResponse::build(upstream.status());
    let length = upstream
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let closes = closes_after(upstream.version(), upstream.headers());
    let cookies = gw.sessions.cookies();
    for (k, v) in
        headers::downstream_response_headers(upstream.headers(), |n| cookies.is_ours(n)).iter()
    {
        if k != header::CONTENT_LENGTH {
            b.append_header((k.clone(), v.clone()));
        }
    }
    let status = upstream.status();
    // These answers have no body by definition: framing one (even an empty chunked one) would
    // corrupt the connection.
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(b.finish());
    }
    // A body that breaks off is the upstream's failure: logged here by kind (actix's own line
    // for it is hidden with the client's mistakes, and carries library text).
    let upstream = upstream.inspect_err(|e| {
        tracing::warn!(
            error_kind = payload_error_kind(e),
            "upstream response body broke off"
        )
    });
    Ok(match length {
        // awc would put this connection back in its pool once the body's end is read, though
        // the upstream closes it: stop after the declared length instead, which drops it.
        Some(n) if closes => b.body(SizedStream::new(n, Exactly::new(upstream, n))),
        Some(n) => b.body(SizedStream::new(n, upstream)),
        None => b.body(BodyStream::new(upstream)),
    })
}

/// No body, keeping a declared `Content-Length: 0`.
fn empty(content_length: Option<u64>) -> awc::body::BoxBody {
    match content_length {
        Some(_) => awc::body::BoxBody::new(web::Bytes::new()),
        None => awc::body::BoxBody::new(awc::body::None::new()),
    }
}

/// Methods that change nothing (RFC 9110 §9.2.1), so sending one twice is harmless even if
/// the first reached the upstream: the ones Go's transport retries too. (PUT and DELETE are
/// idempotent but not safe: a bodiless DELETE run twice may not be.)
fn safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether the request failed before the upstream answered anything, on a connection that
/// was closed under it (not a refused connection or a deadline).
fn before_any_answer(e: &SendRequestError) -> bool {
    matches!(
        e,
        SendRequestError::Connect(ConnectError::Disconnected)
            | SendRequestError::Send(_)
            | SendRequestError::Response(actix_web::error::ParseError::Io(_))
    )
}

/// The kind of a send error, for logs (never its text, which can carry the URL).
fn error_kind(e: &SendRequestError) -> &'static str {
    match e {
        SendRequestError::Url(_) => "url",
        SendRequestError::Connect(ConnectError::Disconnected) => "disconnected",
        SendRequestError::Connect(ConnectError::Timeout) => "connect_timeout",
        SendRequestError::Connect(ConnectError::Io(_)) => "connect_io",
        SendRequestError::Connect(ConnectError::Resolver(_)) => "resolve",
        SendRequestError::Connect(_) => "connect",
        SendRequestError::Send(_) => "send",
        SendRequestError::Response(_) => "response",
        SendRequestError::Http(_) => "http",
        SendRequestError::H2(_) => "h2",
        SendRequestError::Timeout => "timeout",
        SendRequestError::TunnelNotSupported => "tunnel",
        SendRequestError::Body(_) => "body",
        SendRequestError::Custom(_, _) => "custom",
        _ => "other",
    }
}

/// The kind of a body error, for logs.
fn payload_error_kind(e: &actix_web::error::PayloadError) -> &'static str {
    use actix_web::error::PayloadError;
    match e {
        PayloadError::Incomplete(_) => "incomplete",
        PayloadError::EncodingCorrupted => "encoding",
        PayloadError::Overflow => "overflow",
        PayloadError::UnknownLength => "unknown_length",
        PayloadError::Io(_) => "io",
        _ => "other",
    }
}

/// Whether the upstream closes the connection after this answer without saying so: HTTP/1.0
/// without `Connection: keep-alive` (awc only honours an explicit `close`).
fn closes_after(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_10
        && !headers
            .get_all(header::CONNECTION)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("keep-alive"))
}

/// The first `n` bytes of a response body, after which the stream (and with it the upstream
/// connection) is dropped without reading on to its end.
struct Exactly<S> {
    inner: Option<S>,
    left: u64,
}

impl<S> Exactly<S> {
    fn new(inner: S, n: u64) -> Exactly<S> {
        Exactly {
            inner: (n > 0).then_some(inner),
            left: n,
        }
    }
}

impl<S, E> futures_util::Stream for Exactly<S>
where
    S: futures_util::Stream<Item = Result<web::Bytes, E>> + Unpin,
{
    type Item = Result<web::Bytes, E>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(mut chunk))) => {
                if chunk.len() as u64 >= self.left {
                    chunk.truncate(self.left as usize);
                    self.left = 0;
                    self.inner = None;
                } else {
                    self.left -= chunk.len() as u64;
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            other => other,
        }
    }
}

/// Why a client's request body stopped a proxied request.
#[derive(Clone, Default)]
struct BodyFault(std::rc::Rc<std::cell::Cell<Option<BodyFaultKind>>>);

#[derive(Clone, Copy)]
enum BodyFaultKind {
    TooLarge,
    Idle,
    Malformed,
}

impl BodyFault {
    fn set(&self, kind: BodyFaultKind) {
        self.0.set(Some(kind));
    }

    /// The error for the client (a body that failed for no reason recorded is malformed).
    fn error(&self) -> GatewayError {
        match self.0.get() {
            Some(BodyFaultKind::TooLarge) => GatewayError::BodyTooLarge,
            Some(BodyFaultKind::Idle) => GatewayError::BodyTimeout,
            Some(BodyFaultKind::Malformed) | None => {
                GatewayError::BadRequest("The request's body is malformed.")
            }
        }
    }
}

/// The client's body as passed upstream: at most `max` bytes, never a pause longer than `idle`
/// between two pieces (a client trickling a byte a second is cut, as nginx's
/// `client_body_timeout` does), and a broken encoding recorded as such. The first failure
/// ends the stream and is recorded in `fault`.
///
/// The first piece is read before the upstream is asked: a body that never comes, or is
/// broken from its first byte, is answered (408, 400) without an upstream connection, and
/// while the client still listens (actix drops a connection whose chunked framing broke once
/// nothing waits on it).
///
/// Fails with the client's error when the first piece fails.
async fn guarded_body(
    body: web::Payload,
    max: u64,
    idle: std::time::Duration,
    fault: BodyFault,
) -> Result<
    impl futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>>,
    GatewayError,
> {
    let mut stream = Box::pin(body_stream(body, max, idle, fault.clone()));
    match stream.next().await {
        Some(Err(_)) => Err(fault.error()),
        first => Ok(futures_util::stream::iter(first).chain(stream)),
    }
}

fn body_stream(
    body: web::Payload,
    max: u64,
    idle: std::time::Duration,
    fault: BodyFault,
) -> impl futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>> {
    use actix_web::error::PayloadError;
    futures_util::stream::unfold(Some((body, 0u64)), move |state| {
        let fault = fault.clone();
        async move {
            let (mut body, seen) = state?;
            let failed = |kind: BodyFaultKind, e: PayloadError| {
                fault.set(kind);
                Some((Err(e), None))
            };
            match tokio::time::timeout(idle, body.next()).await {
                Err(_) => failed(
                    BodyFaultKind::Idle,
                    PayloadError::Io(std::io::ErrorKind::TimedOut.into()),
                ),
                Ok(None) => None,
                Ok(Some(Err(e))) => failed(BodyFaultKind::Malformed, e),
                Ok(Some(Ok(chunk))) => {
                    let seen = seen + chunk.len() as u64;
                    if seen > max {
                        failed(BodyFaultKind::TooLarge, PayloadError::Overflow)
                    } else {
                        Some((Ok(chunk), Some((body, seen))))
                    }
                }
            }
        }
    })
}
