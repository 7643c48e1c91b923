//! [`CloudBaseError`]: what went wrong talking to CloudBase, and how a response body is
//! turned into a value or an API error the way the official SDK reads it (spec §2.4, §3).

use std::time::Duration;

use serde::de::DeserializeOwned;

/// Why a request never got an answer. Only a kind: library error text can carry URLs with
/// query strings, so it is not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// DNS, TCP or TLS connection failed.
    Connect,
    /// The request could not be sent or the response was cut off.
    Io,
    /// The response body was larger than the client accepts.
    TooLarge,
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportKind::Connect => "connection failed",
            TransportKind::Io => "request or response interrupted",
            TransportKind::TooLarge => "response too large",
        })
    }
}

/// An error answer from CloudBase: `{error, error_code, error_description}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The endpoint, e.g. `/auth/v1/signin`.
    pub endpoint: &'static str,
    /// The HTTP status (CloudBase's SDK ignores it; kept for logs and metrics).
    pub status: u16,
    /// The stable error name, e.g. `invalid_password` or `captcha_required`.
    pub error: String,
    /// The numeric code, when given (e.g. 4001).
    pub error_code: Option<i64>,
    /// CloudBase's human-readable description.
    pub error_description: String,
    /// The `x-request-id` the call was sent with.
    pub request_id: String,
    /// Seconds to wait, for `resource_exhausted`, when CloudBase says.
    pub retry_after: Option<u64>,
}

/// Everything that can go wrong calling CloudBase.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CloudBaseError {
    /// CloudBase could not be reached, or the exchange broke off.
    #[error("could not reach CloudBase for {endpoint}: {kind}")]
    Transport {
        /// The endpoint.
        endpoint: &'static str,
        /// What failed.
        kind: TransportKind,
        /// The `x-request-id` of the call.
        request_id: String,
    },
    /// No complete answer within the configured deadline.
    #[error("CloudBase did not answer {endpoint} within {timeout:?}")]
    Timeout {
        /// The endpoint.
        endpoint: &'static str,
        /// The deadline.
        timeout: Duration,
        /// The `x-request-id` of the call.
        request_id: String,
    },
    /// An answer that is not the JSON expected.
    #[error("CloudBase answered {endpoint} with an undecodable body (HTTP {status})")]
    Decode {
        /// The endpoint.
        endpoint: &'static str,
        /// The HTTP status.
        status: u16,
        /// The `x-request-id` of the call.
        request_id: String,
    },
    /// CloudBase refused the call.
    #[error("CloudBase refused {}: {} (code {:?}, HTTP {})", .0.endpoint, .0.error, .0.error_code, .0.status)]
    Api(Box<ApiError>),
}

impl CloudBaseError {
    /// The API error, when CloudBase answered with one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            CloudBaseError::Api(e) => Some(e),
            _ => None,
        }
    }

    /// The API error name (`invalid_password`, …), when CloudBase answered with one.
    pub fn code(&self) -> Option<&str> {
        self.api().map(|e| e.error.as_str())
    }

    /// Whether CloudBase answered with the error `name`.
    pub fn is(&self, name: &str) -> bool {
        self.code() == Some(name)
    }

    /// Whether the call needs a (new) captcha token: `captcha_required` or `captcha_invalid`.
    pub fn needs_captcha(&self) -> bool {
        self.is("captcha_required") || self.is("captcha_invalid")
    }

    /// Whether CloudBase itself could not be used (transport, timeout, garbage, or a 5xx-class
    /// API error), as opposed to refusing the caller's input.
    pub fn is_unavailable(&self) -> bool {
        match self {
            CloudBaseError::Transport { .. }
            | CloudBaseError::Timeout { .. }
            | CloudBaseError::Decode { .. } => true,
            CloudBaseError::Api(e) => matches!(
                e.error.as_str(),
                "unavailable" | "internal" | "deadline_exceeded" | "unknown"
            ),
        }
    }

    /// The `x-request-id` the call was sent with, for correlating with CloudBase's logs.
    pub fn request_id(&self) -> &str {
        match self {
            CloudBaseError::Transport { request_id, .. }
            | CloudBaseError::Timeout { request_id, .. }
            | CloudBaseError::Decode { request_id, .. } => request_id,
            CloudBaseError::Api(e) => &e.request_id,
        }
    }

    /// The endpoint the error came from.
    pub fn endpoint(&self) -> &'static str {
        match self {
            CloudBaseError::Transport { endpoint, .. }
            | CloudBaseError::Timeout { endpoint, .. }
            | CloudBaseError::Decode { endpoint, .. } => endpoint,
            CloudBaseError::Api(e) => e.endpoint,
        }
    }
}

fn truthy(v: Option<&serde_json::Value>) -> bool {
    match v {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(serde_json::Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

fn text_of(v: Option<&serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// Turns a response body into `T` or a [`CloudBaseError`], reading it as the official SDK
/// does: a truthy `error`, a truthy `error_code`, or a truthy `code` is an error whatever the
/// status. Otherwise only a 2xx answer is a success (an empty 2xx body counts as `{}`); any
/// other status without error fields is undecodable (the SDK counts an empty body as a network
/// failure).
///
/// Fails with [`CloudBaseError::Decode`] when the body is not JSON or not of `T`'s shape.
pub fn parse_response<T: DeserializeOwned>(
    endpoint: &'static str,
    status: u16,
    body: &[u8],
    request_id: &str,
) -> Result<T, CloudBaseError> {
    let decode = || CloudBaseError::Decode {
        endpoint,
        status,
        request_id: request_id.to_string(),
    };
    let success = (200..300).contains(&status);
    let value: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        if !success {
            return Err(decode());
        }
        serde_json::Value::Object(Default::default())
    } else {
        serde_json::from_slice(body).map_err(|_| decode())?
    };
    if let Some(obj) = value.as_object() {
        let has_error = truthy(obj.get("error")) || truthy(obj.get("error_code"));
        let has_code = truthy(obj.get("code"));
        if has_error || has_code {
            let error = if has_error {
                let e = text_of(obj.get("error"));
                if e.is_empty() {
                    "unknown".to_string()
                } else {
                    e
                }
            } else {
                text_of(obj.get("code"))
            };
            let description = if has_error {
                text_of(obj.get("error_description"))
            } else {
                text_of(obj.get("message"))
            };
            let retry_after = obj
                .get("retry_after")
                .or_else(|| obj.get("retryAfter"))
                .and_then(|v| {
                    v.as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                });
            return Err(CloudBaseError::Api(Box::new(ApiError {
                endpoint,
                status,
                error,
                error_code: obj.get("error_code").and_then(serde_json::Value::as_i64),
                error_description: description,
                request_id: request_id.to_string(),
                retry_after,
            })));
        }
    }
    if !success {
        return Err(decode());
    }
    serde_json::from_value(value).map_err(|_| decode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Thing {
        a: u32,
    }

    fn parse(status: u16, body: &str) -> Result<Thing, CloudBaseError> {
        parse_response("/auth/v1/x", status, body.as_bytes(), "rid")
    }

    #[test]
    fn success_bodies_decode() {
        assert_eq!(
            parse(200, r#"{"a":1,"extra":true}"#).unwrap(),
            Thing { a: 1 }
        );
        assert_eq!(parse(201, r#"{"a":2}"#).unwrap(), Thing { a: 2 });
        // Stricter than the SDK: a failed status without error fields is never a success, so a
        // call whose answer is ignored (revoke, reset…) cannot pass when a proxy answered 5xx.
        assert!(matches!(
            parse(500, r#"{"a":2}"#),
            Err(CloudBaseError::Decode { status: 500, .. })
        ));
    }

    #[test]
    fn error_bodies_keep_every_field() {
        let e = parse(
            400,
            r#"{"error":"captcha_required","error_code":4001,"error_description":"need captcha"}"#,
        )
        .unwrap_err();
        let api = e.api().unwrap();
        assert_eq!(api.error, "captcha_required");
        assert_eq!(api.error_code, Some(4001));
        assert_eq!(api.error_description, "need captcha");
        assert_eq!(api.status, 400);
        assert_eq!(api.request_id, "rid");
        assert!(e.needs_captcha());
        assert!(!e.is_unavailable());
    }

    #[test]
    fn error_detected_by_code_alone_or_by_sdk_style_code_field() {
        let e = parse(200, r#"{"error_code":14,"error_description":"down"}"#).unwrap_err();
        assert_eq!(e.code(), Some("unknown"));
        assert_eq!(e.api().unwrap().error_code, Some(14));
        let e = parse(200, r#"{"code":"SOMETHING_WRONG","message":"bad"}"#).unwrap_err();
        assert_eq!(e.code(), Some("SOMETHING_WRONG"));
        assert_eq!(e.api().unwrap().error_description, "bad");
    }

    #[test]
    fn retry_after_is_read_in_both_spellings() {
        let e = parse(
            429,
            r#"{"error":"resource_exhausted","error_code":8,"retry_after":30}"#,
        )
        .unwrap_err();
        assert_eq!(e.api().unwrap().retry_after, Some(30));
        let e = parse(429, r#"{"error":"resource_exhausted","retryAfter":"12"}"#).unwrap_err();
        assert_eq!(e.api().unwrap().retry_after, Some(12));
    }

    #[test]
    fn garbage_and_wrong_shapes_are_decode_errors() {
        assert!(matches!(
            parse(502, "<html>bad gateway</html>"),
            Err(CloudBaseError::Decode { status: 502, .. })
        ));
        assert!(matches!(
            parse(200, r#"{"b":1}"#),
            Err(CloudBaseError::Decode { .. })
        ));
        assert!(matches!(
            parse(503, "[1,2]"),
            Err(CloudBaseError::Decode { .. })
        ));
        assert!(parse(200, "not json").unwrap_err().is_unavailable());
    }

    #[test]
    fn empty_body_is_an_empty_object() {
        #[derive(Debug, serde::Deserialize)]
        struct Empty {}
        assert!(parse_response::<Empty>("/x", 200, b"", "r").is_ok());
        // Regression: an empty 502/503 is not a success for calls whose answer is ignored.
        for status in [404, 500, 502, 503] {
            let e = parse_response::<Empty>("/x", status, b"", "r").unwrap_err();
            assert!(matches!(e, CloudBaseError::Decode { .. }), "{status}");
            assert!(e.is_unavailable());
        }
        // A non-2xx answer with a JSON body but no error fields is not a success either.
        assert!(parse_response::<Empty>("/x", 503, b"{}", "r").is_err());
        assert!(parse_response::<Empty>("/x", 200, b"{}", "r").is_ok());
        // A falsy error is not an error.
        assert!(parse_response::<Empty>("/x", 200, br#"{"error":"","code":0}"#, "r").is_ok());
    }

    #[test]
    fn unavailable_classification() {
        let e = parse(503, r#"{"error":"unavailable","error_code":14}"#).unwrap_err();
        assert!(e.is_unavailable());
        let t = CloudBaseError::Timeout {
            endpoint: "/x",
            timeout: Duration::from_secs(1),
            request_id: "rid-1".into(),
        };
        assert!(t.is_unavailable());
        assert_eq!(t.endpoint(), "/x");
        assert_eq!(t.request_id(), "rid-1");
    }
}
