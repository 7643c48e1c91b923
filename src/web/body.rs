//! Request bodies the gateway reads itself (the hosted pages' forms, tickets): at most
//! [`MAX_BODY`] bytes, all of them within `client_body_timeout`, so a client sending a byte a
//! second cannot hold a connection open. A body that breaks a rule is answered at once (the
//! error page, or JSON for API callers) and the handler never runs.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::StreamExt;

use super::Gateway;
use crate::error::GatewayError;

/// The largest body read: a form of the hosted pages, or a ticket's JSON.
pub const MAX_BODY: usize = 16 * 1024;

/// A body read whole; derefs to its bytes.
pub struct Body(web::Bytes);

impl std::ops::Deref for Body {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl FromRequest for Body {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Body, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let Some(gw) = req.app_data::<web::Data<Gateway>>().cloned() else {
                return Err(actix_web::error::ErrorInternalServerError("no gateway"));
            };
            let declared = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let read = async {
                if declared.is_some_and(|n| n > MAX_BODY as u64) {
                    return Err(GatewayError::BodyTooLarge);
                }
                let mut buf = web::BytesMut::new();
                while let Some(chunk) = payload.next().await {
                    let chunk = chunk.map_err(|_| {
                        GatewayError::BadRequest("The request's body is malformed.")
                    })?;
                    if buf.len() + chunk.len() > MAX_BODY {
                        return Err(GatewayError::BodyTooLarge);
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(buf.freeze())
            };
            let deadline = gw.config.proxy.client_body_timeout;
            let result = match tokio::time::timeout(deadline, read).await {
                Ok(r) => r,
                Err(_) => Err(GatewayError::BodyTimeout),
            };
            result.map(Body).map_err(|e| {
                let inc = super::forms::incoming(&gw, &req);
                let resp = super::pages::error_response(&e, &inc);
                actix_web::error::InternalError::from_response(e, resp).into()
            })
        })
    }
}
