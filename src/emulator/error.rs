//! Errors the emulator answers with, in CloudBase's format (spec §3):
//! `{"error", "error_code", "error_description"}` with the HTTP statuses of spec §3.1.
//!
//! Numeric codes are the SDK's `AuthErrorCode` values where they are known. For the errors
//! whose code is undocumented (`invalid_password`, `invalid_grant`, …) the emulator uses the
//! gRPC code of the family they belong to; the SDK reads the `error` name, not the number.

use serde_json::json;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmuError {
    /// HTTP status.
    pub status: u16,
    /// The stable error name.
    pub error: &'static str,
    /// The numeric code.
    pub code: i64,
    /// A description for people.
    pub description: String,
    /// Seconds to wait, sent as `retry_after` (the SDK reads it for rate limits).
    pub retry_after: Option<u64>,
}

macro_rules! errors {
    ($($name:ident => ($status:expr, $code:expr)),* $(,)?) => {
        impl EmuError {
            $(
                #[doc = concat!("`", stringify!($name), "`")]
                pub fn $name(description: impl Into<String>) -> Self {
                    Self { status: $status, error: stringify!($name), code: $code, description: description.into(), retry_after: None }
                }
            )*
        }
    };
}

errors! {
    invalid_argument => (400, 3),
    not_found => (404, 5),
    permission_denied => (403, 7),
    resource_exhausted => (429, 8),
    failed_precondition => (400, 9),
    aborted => (400, 10),
    unimplemented => (403, 12),
    internal => (500, 13),
    unavailable => (503, 14),
    unauthenticated => (401, 16),
    captcha_required => (400, 4001),
    captcha_invalid => (400, 4002),
    invalid_password => (400, 3),
    password_not_set => (400, 9),
    user_pending => (403, 9),
    user_blocked => (403, 7),
    invalid_status => (429, 8),
    invalid_grant => (400, 16),
}

impl EmuError {
    /// The same error telling the caller to wait `secs`.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut b = json!({
            "error": self.error,
            "error_code": self.code,
            "error_description": self.description,
        });
        if let Some(secs) = self.retry_after {
            b["retry_after"] = json!(secs);
        }
        b
    }
}
