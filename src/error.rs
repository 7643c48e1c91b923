//! The one error type of the request path. Each variant records where the error came from,
//! and the HTTP status and stable code follow from that. Bodies are safe: a page for browsers,
//! `{"error", "error_description"}` for API callers, never a library's error text.

use actix_web::http::StatusCode;

use crate::cloudbase::error::CloudBaseError;
use crate::store::StoreError;

/// Everything that can stop a request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No session where one is needed (API callers; browsers are redirected instead).
    #[error("unauthenticated")]
    Unauthenticated,
    /// The route's policy refuses this user.
    #[error("forbidden")]
    Forbidden,
    /// A form arrived without the CSRF token of this browser.
    #[error("csrf token missing or wrong")]
    Csrf,
    /// The request itself is malformed (a user or client mistake).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// No route matches.
    #[error("no route")]
    NotFound,
    /// Request headers over `max_header_size`.
    #[error("request headers too large")]
    HeadersTooLarge,
    /// Request body over `max_body_size`.
    #[error("request body too large")]
    BodyTooLarge,
    /// The upstream refused or dropped the connection.
    #[error("upstream unreachable")]
    UpstreamUnreachable,
    /// The upstream did not answer in time.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// CloudBase is needed and cannot be reached.
    #[error("CloudBase unavailable")]
    CloudBaseUnavailable,
    /// CloudBase refused a call made for the user.
    #[error("CloudBase refused: {0}")]
    CloudBase(CloudBaseError),
    /// The session store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A multi-step flow's id is missing, unknown, expired, used or another browser's.
    #[error("flow expired")]
    FlowExpired,
    /// A redirect flow's `state` is missing, altered, expired, used, of another kind or another
    /// browser's.
    #[error("state invalid")]
    StateInvalid,
    /// A hosted-page link names another CloudBase environment or client.
    #[error("wrong environment")]
    WrongEnvironment,
    /// Over a rate limit; retry after this many seconds.
    #[error("rate limited")]
    RateLimited(u64),
    /// The `Host` is not one the gateway serves.
    #[error("unknown host")]
    UnknownHost,
    /// The client did not send its body in time.
    #[error("request body timed out")]
    BodyTimeout,
    /// A method the gateway never passes on (`TRACE`, `CONNECT`).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Forward-auth asked by a caller that is not in `trusted_proxies`.
    #[error("untrusted forward-auth caller")]
    UntrustedProxy,
}

impl From<CloudBaseError> for GatewayError {
    fn from(e: CloudBaseError) -> Self {
        if e.is_unavailable() {
            GatewayError::CloudBaseUnavailable
        } else {
            GatewayError::CloudBase(e)
        }
    }
}

impl GatewayError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Unauthenticated => StatusCode::UNAUTHORIZED,
            GatewayError::Forbidden | GatewayError::Csrf | GatewayError::UntrustedProxy => {
                StatusCode::FORBIDDEN
            }
            GatewayError::UnknownHost => StatusCode::MISDIRECTED_REQUEST,
            GatewayError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::BadRequest(_)
            | GatewayError::FlowExpired
            | GatewayError::StateInvalid
            | GatewayError::WrongEnvironment => StatusCode::BAD_REQUEST,
            GatewayError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::NotFound => StatusCode::NOT_FOUND,
            GatewayError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::CloudBaseUnavailable | GatewayError::Store(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GatewayError::CloudBase(e) => match e.code() {
                Some("unauthenticated") => StatusCode::UNAUTHORIZED,
                Some("permission_denied") => StatusCode::FORBIDDEN,
                Some("resource_exhausted") => StatusCode::TOO_MANY_REQUESTS,
                Some("invalid_argument") => StatusCode::BAD_REQUEST,
                // Anything else is CloudBase refusing something the visitor did not get wrong
                // (anonymous sign-in switched off, a misconfigured environment).
                _ => StatusCode::BAD_GATEWAY,
            },
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::Unauthenticated => "unauthenticated",
            GatewayError::Forbidden => "forbidden",
            GatewayError::Csrf => "csrf_failed",
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::NotFound => "not_found",
            GatewayError::HeadersTooLarge => "headers_too_large",
            GatewayError::BodyTooLarge => "body_too_large",
            GatewayError::UpstreamUnreachable => "upstream_unreachable",
            GatewayError::UpstreamTimeout => "upstream_timeout",
            GatewayError::CloudBaseUnavailable => "cloudbase_unavailable",
            GatewayError::CloudBase(_) => "cloudbase_error",
            GatewayError::Store(_) => "store_unavailable",
            GatewayError::FlowExpired => "flow_expired",
            GatewayError::StateInvalid => "state_invalid",
            GatewayError::WrongEnvironment => "wrong_environment",
            GatewayError::RateLimited(_) => "rate_limited",
            GatewayError::UnknownHost => "unknown_host",
            GatewayError::BodyTimeout => "body_timeout",
            GatewayError::MethodNotAllowed => "method_not_allowed",
            GatewayError::UntrustedProxy => "untrusted_proxy",
        }
    }

    /// A heading for the error page.
    pub fn title(&self) -> &'static str {
        match self {
            GatewayError::Unauthenticated => "Sign-in needed",
            GatewayError::Forbidden => "Access denied",
            GatewayError::Csrf => "Form expired",
            GatewayError::BadRequest(_) => "Bad request",
            GatewayError::NotFound => "Not found",
            GatewayError::HeadersTooLarge => "Request headers too large",
            GatewayError::BodyTooLarge => "Request too large",
            GatewayError::UpstreamUnreachable => "Application unreachable",
            GatewayError::UpstreamTimeout => "Application timed out",
            GatewayError::CloudBaseUnavailable | GatewayError::Store(_) => {
                "Temporarily unavailable"
            }
            GatewayError::CloudBase(_) => "Sign-in service refused",
            GatewayError::FlowExpired | GatewayError::StateInvalid => "Start again",
            GatewayError::WrongEnvironment => "Wrong environment",
            GatewayError::RateLimited(_) => "Too many requests",
            GatewayError::UnknownHost => "Unknown site",
            GatewayError::BodyTimeout => "Request timed out",
            GatewayError::MethodNotAllowed => "Method not allowed",
            GatewayError::UntrustedProxy => "Untrusted proxy",
        }
    }

    /// What a person should read: what happened and what to do.
    pub fn description(&self) -> &'static str {
        match self {
            GatewayError::Unauthenticated => "You need to sign in to see this.",
            GatewayError::Forbidden => {
                "You are signed in, but your account may not open this page."
            }
            GatewayError::Csrf => {
                "This form is no longer valid. Go back, reload the page and try again."
            }
            GatewayError::BadRequest(what) => what,
            GatewayError::NotFound => "There is nothing at this address.",
            GatewayError::HeadersTooLarge => {
                "The request's headers are too large. Clearing this site's cookies may help."
            }
            GatewayError::BodyTooLarge => "The request's body is larger than this site accepts.",
            GatewayError::UpstreamUnreachable => {
                "The application behind the gateway cannot be reached. Try again in a moment."
            }
            GatewayError::UpstreamTimeout => {
                "The application behind the gateway did not answer in time. Try again in a moment."
            }
            GatewayError::CloudBaseUnavailable | GatewayError::Store(_) => {
                "The sign-in service cannot be reached right now. Try again in a moment."
            }
            GatewayError::CloudBase(_) => {
                "The sign-in service refused the request. Start again from the sign-in page."
            }
            GatewayError::FlowExpired => {
                "This sign-in step expired or was already used. Start again."
            }
            GatewayError::StateInvalid => {
                "This sign-in link expired or was already used — start again."
            }
            GatewayError::WrongEnvironment => {
                "This sign-in link is for another CloudBase environment."
            }
            GatewayError::RateLimited(_) => "Too many requests. Wait a moment and try again.",
            GatewayError::UnknownHost => "This gateway does not serve this site name.",
            GatewayError::BodyTimeout => {
                "The request's body did not arrive in time. Check the connection and try again."
            }
            GatewayError::MethodNotAllowed => "This method is not allowed here.",
            GatewayError::UntrustedProxy => {
                "Forward-auth answers only the proxies listed in trusted_proxies."
            }
        }
    }

    /// Seconds a client should wait before retrying, for `Retry-After`.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            GatewayError::RateLimited(s) => Some(*s),
            e if e.status() == StatusCode::SERVICE_UNAVAILABLE => Some(10),
            _ => None,
        }
    }

    /// Every variant once, for tests that check each has a page in both languages.
    #[cfg(test)]
    pub fn samples() -> Vec<GatewayError> {
        vec![
            GatewayError::Unauthenticated,
            GatewayError::Forbidden,
            GatewayError::Csrf,
            GatewayError::StateInvalid,
            GatewayError::BadRequest("x"),
            GatewayError::NotFound,
            GatewayError::HeadersTooLarge,
            GatewayError::BodyTooLarge,
            GatewayError::UpstreamUnreachable,
            GatewayError::UpstreamTimeout,
            GatewayError::CloudBaseUnavailable,
            GatewayError::Store(StoreError("x".into())),
            GatewayError::FlowExpired,
            GatewayError::WrongEnvironment,
            GatewayError::RateLimited(3),
            GatewayError::UnknownHost,
            GatewayError::BodyTimeout,
            GatewayError::MethodNotAllowed,
            GatewayError::UntrustedProxy,
        ]
    }

    /// Whether the error is the gateway's or a dependency's fault (logged at warn), rather than
    /// the caller's.
    pub fn is_server_side(&self) -> bool {
        self.status().is_server_error()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::ENTRIES;

    #[test]
    fn every_error_has_a_page_text_in_both_languages() {
        for e in GatewayError::samples() {
            for part in ["title", "desc"] {
                let key = format!("gwerr.{}.{part}", e.code());
                assert!(ENTRIES.iter().any(|(k, _, _)| *k == key), "missing {key}");
            }
        }
        let key = "gwerr.cloudbase_error.title";
        assert!(ENTRIES.iter().any(|(k, _, _)| *k == key));
    }
}
