//! Request and response bodies of the CloudBase auth API (spec §4–§5), as the client sends
//! and reads them. Tokens are [`Secret`]s, so `Debug` never prints them. The emulator has its
//! own, independent types.

use serde::{Deserialize, Serialize};

use crate::secret::{expose, expose_opt, Secret};

/// A token response ("Credentials", spec §4.1), returned by every sign-in and refresh.
#[derive(Debug, Clone, Deserialize)]
pub struct Credentials {
    /// Always `Bearer`.
    #[serde(default)]
    pub token_type: String,
    /// The access token (a JWT).
    pub access_token: Secret,
    /// The refresh token; rotated on every refresh.
    #[serde(default)]
    pub refresh_token: Option<Secret>,
    /// Access-token lifetime in seconds.
    #[serde(default)]
    pub expires_in: u64,
    /// `anonymous` for anonymous sessions.
    #[serde(default)]
    pub scope: String,
    /// The user id.
    #[serde(default)]
    pub sub: String,
    /// The user's groups (roles).
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Credentials {
    /// Whether these credentials belong to an anonymous user.
    pub fn is_anonymous(&self) -> bool {
        self.scope.split_whitespace().any(|s| s == "anonymous")
    }
}

/// A group membership in a user profile.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct GroupRef {
    /// Group id.
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    /// When the membership ends, if it does (CloudBase's own format, kept as text).
    #[serde(
        default,
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<String>,
}

/// A third-party identity linked to a user.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct LinkedProvider {
    /// Provider id, e.g. `wx_open`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub id: String,
    /// The user's id at the provider.
    #[serde(default, deserialize_with = "lenient::string")]
    pub provider_user_id: String,
    /// Display name at the provider.
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
}

/// `GET /auth/v1/user/me` (spec §5.19). Parsed leniently: the real service's field types are
/// partly undocumented (spec §14), so `null`, numbers and strings are all accepted where text
/// is expected, and an unexpected shape never fails the whole profile.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct UserProfile {
    /// User id.
    #[serde(default, deserialize_with = "lenient::string")]
    pub sub: String,
    /// Display name.
    #[serde(default, deserialize_with = "lenient::string")]
    pub name: String,
    /// Avatar URL.
    #[serde(default, deserialize_with = "lenient::string")]
    pub picture: String,
    /// User name.
    #[serde(default, deserialize_with = "lenient::string")]
    pub username: String,
    /// E-mail address.
    #[serde(default, deserialize_with = "lenient::string")]
    pub email: String,
    /// Whether the e-mail was verified.
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub email_verified: bool,
    /// Phone number, `+86 138…` form.
    #[serde(default, deserialize_with = "lenient::string")]
    pub phone_number: String,
    /// `MALE`, `FEMALE` or `UNKNOWN`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub gender: String,
    /// Group memberships (plain ids are accepted too).
    #[serde(default, deserialize_with = "lenient::groups")]
    pub groups: Vec<GroupRef>,
    /// Linked identities.
    #[serde(default, deserialize_with = "lenient::list")]
    pub providers: Vec<LinkedProvider>,
    /// `ACTIVE`, `BLOCKED`, `PENDING`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub status: String,
    /// Whether a password is set.
    #[serde(default, deserialize_with = "lenient::boolean")]
    pub has_password: bool,
    /// Creation time as CloudBase reports it.
    #[serde(default, deserialize_with = "lenient::string")]
    pub created_at: String,
}

/// Lenient field parsers for answers whose exact types CloudBase does not document.
mod lenient {
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    fn text(v: Value) -> String {
        match v {
            Value::String(s) => s,
            Value::Null => String::new(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => other.to_string(),
        }
    }

    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Value::deserialize(d).map(text)
    }

    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Some(text(Value::deserialize(d)?)).filter(|s| !s.is_empty()))
    }

    pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Bool(b) => b,
            Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
            Value::String(s) => matches!(s.as_str(), "true" | "1" | "SET"),
            _ => false,
        })
    }

    /// A list whose unreadable items are skipped; `null` is empty.
    pub fn list<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Array(items) => items
                .into_iter()
                .filter_map(|v| serde_json::from_value(v).ok())
                .collect(),
            _ => Vec::new(),
        })
    }

    /// Groups as `[{id}]` or as plain ids.
    pub fn groups<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<super::GroupRef>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Array(items) => items
                .into_iter()
                .filter_map(|v| match v {
                    Value::String(id) => Some(super::GroupRef {
                        id,
                        expires_at: None,
                    }),
                    other => serde_json::from_value(other).ok(),
                })
                .filter(|g: &super::GroupRef| !g.id.is_empty())
                .collect(),
            _ => Vec::new(),
        })
    }
}

/// The contact a code is sent to, or that an account is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Contact {
    /// An e-mail address.
    Email(String),
    /// A phone number in the `+86 13800000000` form.
    PhoneNumber(String),
}

impl Contact {
    /// A phone contact, formatted as the SDK formats it (spec §5.1).
    pub fn phone(number: &str) -> Self {
        Contact::PhoneNumber(format_phone(number))
    }

    /// The address or number.
    pub fn value(&self) -> &str {
        match self {
            Contact::Email(v) | Contact::PhoneNumber(v) => v,
        }
    }
}

/// Formats a phone number as the official SDK does: `+8613800000000` → `+86 13800000000`, and
/// a number without a `+` gets `+86 ` in front. Numbers that already carry a space after the
/// country code are kept.
pub fn format_phone(input: &str) -> String {
    let trimmed = input.trim();
    if let Some(rest) = trimmed.strip_prefix('+') {
        if rest.contains(' ') {
            return trimmed.to_string();
        }
        if let Some(national) = rest.strip_prefix("86") {
            return format!("+86 {national}");
        }
        return trimmed.to_string();
    }
    format!("+86 {}", trimmed.replace(' ', ""))
}

/// `target` of `POST /auth/v1/verification`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VerificationTarget {
    /// No existence check.
    Any,
    /// The contact must belong to a user.
    User,
    /// The contact must not belong to a user.
    NotUser,
    /// The signed-in user's own contact.
    CurUser,
}

/// Body of `POST /auth/v1/verification`.
#[derive(Debug, Clone, Serialize)]
pub struct VerificationRequest {
    /// Where to send the code.
    #[serde(flatten)]
    pub contact: Contact,
    /// Existence rule.
    pub target: VerificationTarget,
    /// Optional purpose (`recovery`, `reauthentication`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<String>,
}

/// Answer of `POST /auth/v1/verification`.
#[derive(Debug, Clone, Deserialize)]
pub struct VerificationResponse {
    /// Identifies the code for `verification/verify`.
    pub verification_id: String,
    /// Seconds the code stays valid.
    #[serde(default)]
    pub expires_in: u64,
    /// Whether the contact belongs to a user (sign in) or not (sign up).
    #[serde(default)]
    pub is_user: bool,
}

/// Answer of `POST /auth/v1/verification/verify`.
#[derive(Debug, Clone, Deserialize)]
pub struct VerifyResponse {
    /// Proves the code was right; spent by signin, signup, reset, sudo or user/contact.
    pub verification_token: Secret,
    /// Seconds the token stays valid.
    #[serde(default)]
    pub expires_in: u64,
}

/// Body of `POST /auth/v1/signin`.
#[derive(Debug, Clone, Serialize)]
pub struct SignInRequest {
    /// User name, e-mail or phone (`+86 138…`).
    pub username: String,
    /// The password, for password sign-in.
    #[serde(serialize_with = "expose_opt", skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// A verification token, for code sign-in.
    #[serde(serialize_with = "expose_opt", skip_serializing_if = "Option::is_none")]
    pub verification_token: Option<Secret>,
}

/// Body of `POST /auth/v1/signup`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SignUpRequest {
    /// E-mail being registered (with `verification_token`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone being registered (with `verification_token`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// From `verification/verify`.
    #[serde(serialize_with = "expose_opt", skip_serializing_if = "Option::is_none")]
    pub verification_token: Option<Secret>,
    /// From `provider/token`, to register a third-party identity.
    #[serde(serialize_with = "expose_opt", skip_serializing_if = "Option::is_none")]
    pub provider_token: Option<Secret>,
    /// Optional user name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Optional password.
    #[serde(serialize_with = "expose_opt", skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Optional display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The anonymous session's access token, to upgrade that user keeping its uid.
    #[serde(serialize_with = "expose_opt", skip_serializing_if = "Option::is_none")]
    pub anonymous_token: Option<Secret>,
}

/// Query of `GET /auth/v1/provider/uri`.
#[derive(Debug, Clone)]
pub struct ProviderUriRequest {
    /// `wx_open`, `wx_mp`, or a configured provider id.
    pub provider_id: String,
    /// Where the provider sends the browser back.
    pub redirect_uri: String,
    /// Opaque value returned on the callback.
    pub state: String,
    /// Optional scope.
    pub scope: Option<String>,
}

/// Answer of `GET /auth/v1/provider/uri`.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderUriResponse {
    /// The provider's authorization page.
    pub uri: String,
    /// The provider's sign-out page, when it has one.
    #[serde(default)]
    pub signout_uri: Option<String>,
}

/// Body of `POST /auth/v1/provider/token`.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderTokenRequest {
    /// The provider.
    pub provider_id: String,
    /// Must equal the `redirect_uri` given to `provider/uri`.
    pub provider_redirect_uri: String,
    /// The `code` from the callback.
    #[serde(serialize_with = "expose")]
    pub provider_code: Secret,
}

/// A third-party profile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProviderProfile {
    /// Provider id.
    pub provider_id: String,
    /// The user's id at the provider.
    pub sub: String,
    /// Display name.
    pub name: String,
    /// Avatar URL.
    pub picture: String,
    /// E-mail, when shared.
    pub email: String,
    /// Phone, when shared.
    pub phone_number: String,
}

/// Answer of `POST /auth/v1/provider/token`.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderTokenResponse {
    /// Spent by `signin/with/provider`, `signup` or `user/provider/bind`.
    pub provider_token: Secret,
    /// Seconds it stays valid.
    #[serde(default)]
    pub expires_in: u64,
    /// What the provider told about the user.
    #[serde(default)]
    pub provider_profile: Option<ProviderProfile>,
}

/// Body of `POST /auth/v1/signin/with/provider`.
#[derive(Debug, Clone, Serialize)]
pub struct SignInWithProviderRequest {
    /// From `provider/token`.
    #[serde(serialize_with = "expose")]
    pub provider_token: Secret,
    /// Refuse to create a new user.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub force_disable_sign_up: bool,
    /// Copy the provider's profile into the user.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sync_profile: bool,
}

/// How `user/sudo` is proved.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SudoProof {
    /// The current password.
    Password(#[serde(serialize_with = "expose")] Secret),
    /// A verification token for the user's own contact.
    VerificationToken(#[serde(serialize_with = "expose")] Secret),
}

/// Answer of `POST /auth/v1/user/sudo`.
#[derive(Debug, Clone, Deserialize)]
pub struct SudoResponse {
    /// Elevated token; empty when the user has no password (third-party only).
    pub sudo_token: Secret,
    /// Seconds it stays valid.
    #[serde(default)]
    pub expires_in: u64,
}

/// What to do when a contact being bound belongs to another account (spec §5.25).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConflictResolution {
    /// Fail.
    Default,
    /// Delete the other account and move the contact.
    DeleteAccountTransfer,
    /// Move the contact only.
    Transfer,
}

/// Body of `PATCH /auth/v1/user/contact`.
#[derive(Debug, Clone, Serialize)]
pub struct ContactUpdateRequest {
    /// The new e-mail or phone.
    #[serde(flatten)]
    pub contact: Contact,
    /// From `user/sudo`.
    #[serde(serialize_with = "expose")]
    pub sudo_token: Secret,
    /// From `verification/verify` for the new contact.
    #[serde(serialize_with = "expose")]
    pub verification_token: Secret,
    /// Conflict rule; CloudBase's default when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict_resolution: Option<ConflictResolution>,
}

/// Body of `POST /auth/v1/reset`.
#[derive(Debug, Clone, Serialize)]
pub struct ResetPasswordRequest {
    /// The account's e-mail or phone.
    #[serde(flatten)]
    pub contact: Contact,
    /// The new password.
    #[serde(serialize_with = "expose")]
    pub new_password: Secret,
    /// From `verification/verify`.
    #[serde(serialize_with = "expose")]
    pub verification_token: Secret,
}

/// One identity source in `GET /auth/v1/user/provider`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProviderInfo {
    /// Provider id.
    pub id: String,
    /// Display name of the source.
    pub name: String,
    /// The user's name at the provider, when bound.
    pub provider_user_name: String,
    /// Whether the user has linked it.
    pub bind: bool,
}

/// Answer of `GET /auth/v1/user/provider`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProviderList {
    /// Number of entries.
    pub total: u64,
    /// The sources.
    pub data: Vec<ProviderInfo>,
}

/// Answer of `POST /auth/v1/captcha/init`: a token at once, or a page to send the browser to.
#[derive(Debug, Clone, Deserialize)]
pub struct CaptchaInitResponse {
    /// Present when no challenge is needed.
    #[serde(default)]
    pub captcha_token: Option<Secret>,
    /// The captcha page, when a challenge is needed.
    #[serde(default)]
    pub url: Option<String>,
    /// Seconds the token or page stays valid.
    #[serde(default)]
    pub expires_in: u64,
}

/// Answer of `POST /auth/v1/captcha/data`.
#[derive(Debug, Clone, Deserialize)]
pub struct CaptchaImage {
    /// `data:image/...;base64,...`
    pub data: String,
    /// Identifies the image for `captcha/data/verify`.
    pub token: String,
    /// Seconds it stays valid.
    #[serde(default)]
    pub expires_in: u64,
}

/// A solved captcha (`captcha/data/verify`, or the captcha page's callback).
#[derive(Debug, Clone, Deserialize)]
pub struct CaptchaToken {
    /// Passed as `captcha_token` when retrying the call.
    pub captcha_token: Secret,
    /// Seconds it stays valid.
    #[serde(default)]
    pub expires_in: u64,
}

/// Answer of `POST /auth/v1/user/signout`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SignOutResponse {
    /// Where to send the browser, when the identity source has a sign-out page.
    pub redirect_uri: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_leniently() {
        let p: UserProfile = serde_json::from_str(
            r#"{"sub":"u1","name":null,"created_at":1700000000,"email_verified":null,
                "groups":["admin",{"id":"staff","expires_at":1800000000},{"bad":1}],
                "providers":null,"has_password":"SET","password":"SET"}"#,
        )
        .unwrap();
        assert_eq!(p.sub, "u1");
        assert_eq!(p.name, "");
        assert_eq!(p.created_at, "1700000000");
        assert!(!p.email_verified);
        assert!(p.has_password);
        assert_eq!(p.groups.len(), 2, "an entry without an id is dropped");
        assert_eq!(p.groups[0].id, "admin");
        assert_eq!(p.groups[1].expires_at.as_deref(), Some("1800000000"));
        assert!(p.providers.is_empty());
    }

    #[test]
    fn phone_numbers_are_formatted_like_the_sdk() {
        assert_eq!(format_phone("+8613800000000"), "+86 13800000000");
        assert_eq!(format_phone("13800000000"), "+86 13800000000");
        assert_eq!(format_phone(" +86 13800000000 "), "+86 13800000000");
        assert_eq!(format_phone("+1 5551234"), "+1 5551234");
    }

    #[test]
    fn bodies_carry_secrets_on_the_wire_but_not_in_debug() {
        let body = SignInRequest {
            username: "alice".into(),
            password: Some(Secret::new("pw-123")),
            verification_token: None,
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"username":"alice","password":"pw-123"}"#
        );
        assert!(!format!("{body:?}").contains("pw-123"));
        let v = VerificationRequest {
            contact: Contact::phone("13800000000"),
            target: VerificationTarget::NotUser,
            usage: None,
        };
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"phone_number":"+86 13800000000","target":"NOT_USER"}"#
        );
        let sudo = SudoProof::Password(Secret::new("pw"));
        assert_eq!(
            serde_json::to_string(&sudo).unwrap(),
            r#"{"password":"pw"}"#
        );
    }
}
