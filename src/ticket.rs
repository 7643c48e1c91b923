//! Custom-login tickets, built exactly as the node SDK's `createTicket` builds them (spec §8):
//! `<private_key_id>/@@/<RS256 JWT>` with header `{"alg":"RS256","typ":"JWT"}` and payload
//! `{alg, env, iat, exp, uid, refresh, expire}`, all times in milliseconds.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// Default `refresh`: refresh the login state every hour.
pub const DEFAULT_REFRESH_MS: u64 = 3_600_000;
/// A ticket is valid for ten minutes.
pub const TICKET_LIFETIME_MS: u64 = 600_000;
/// Default `expire`: seven days from now.
pub const DEFAULT_EXPIRE_AFTER_MS: u64 = 7 * 24 * 3_600_000;

/// The console's `tcb_custom_login.json`.
#[derive(Debug, Deserialize)]
pub struct KeyFile {
    /// Identifies the key pair; the ticket's prefix.
    pub private_key_id: String,
    /// PEM RSA private key.
    pub private_key: Secret,
    /// The environment the key belongs to (missing in keys from old consoles).
    #[serde(default)]
    pub env_id: Option<String>,
}

/// Why a ticket could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TicketError {
    /// The key file could not be read or parsed.
    #[error("key file {0}")]
    KeyFile(String),
    /// Old key files have no `env_id`; the node SDK refuses them the same way.
    #[error("the key file has no env_id: please download the latest private key from the CloudBase console")]
    NoEnv,
    /// The private key is not an RSA key in PEM.
    #[error("private_key is not an RSA private key in PEM")]
    BadKey,
    /// `uid` breaks the SDK's rule.
    #[error("uid must be 4-32 characters of letters, digits and _-#@~=*(){{}}[]:.,<>+")]
    BadUid,
}

/// Reads and parses a `tcb_custom_login.json` key file.
///
/// Fails when the file is unreadable or not the console's JSON.
pub fn read_key_file(path: &Path) -> Result<KeyFile, TicketError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| TicketError::KeyFile(format!("{}: {}", path.display(), e.kind())))?;
    serde_json::from_str(&text).map_err(|_| {
        TicketError::KeyFile(format!(
            "{}: expected JSON with private_key_id, private_key and env_id",
            path.display()
        ))
    })
}

/// Whether `uid` matches the node SDK's rule `^[a-zA-Z0-9_\-#@~=*(){}[\]:.,<>+]{4,32}$`.
pub fn valid_uid(uid: &str) -> bool {
    (4..=32).contains(&uid.len())
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-#@~=*(){}[]:.,<>+".contains(c))
}

#[derive(Serialize)]
struct Payload<'a> {
    alg: &'static str,
    env: &'a str,
    iat: u64,
    exp: u64,
    uid: &'a str,
    refresh: u64,
    expire: u64,
}

/// Builds a ticket for `uid` at `now_ms`. `refresh_ms` defaults to one hour; `expire_ms` is the
/// absolute time (Unix ms) after which the login may no longer be refreshed, default
/// `now_ms` + 7 days, as in `createTicket(uid, {refresh, expire})`.
///
/// Fails when the key file has no env, the key is not RSA, or the uid breaks the rule.
pub fn create_ticket(
    key: &KeyFile,
    uid: &str,
    now_ms: u64,
    refresh_ms: Option<u64>,
    expire_ms: Option<u64>,
) -> Result<String, TicketError> {
    let env = key
        .env_id
        .as_deref()
        .filter(|e| !e.is_empty())
        .ok_or(TicketError::NoEnv)?;
    if !valid_uid(uid) {
        return Err(TicketError::BadUid);
    }
    let signing =
        crate::jwt::signing_key_from_pem(key.private_key.expose()).ok_or(TicketError::BadKey)?;
    let payload = Payload {
        alg: "RS256",
        env,
        iat: now_ms,
        exp: now_ms + TICKET_LIFETIME_MS,
        uid,
        refresh: refresh_ms.unwrap_or(DEFAULT_REFRESH_MS),
        expire: expire_ms.unwrap_or(now_ms + DEFAULT_EXPIRE_AFTER_MS),
    };
    let header = serde_json::json!({ "alg": "RS256", "typ": "JWT" });
    let jwt = crate::jwt::sign_rs256(&header, &payload, &signing).ok_or(TicketError::BadKey)?;
    Ok(format!("{}/@@/{}", key.private_key_id, jwt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

    fn keypair() -> (String, String) {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let key = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let private = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let public = rsa::RsaPublicKey::from(&key)
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        (private, public)
    }

    #[test]
    fn ticket_matches_create_ticket_byte_for_byte() {
        let (private, public) = keypair();
        let key = KeyFile {
            private_key_id: "key-1".into(),
            private_key: Secret::new(private),
            env_id: Some("test-env".into()),
        };
        let ticket = create_ticket(&key, "user_0001", 1_758_597_487_691, None, None).unwrap();
        let (id, jwt) = ticket.split_once("/@@/").unwrap();
        assert_eq!(id, "key-1");
        let mut parts = jwt.split('.');
        // node's jsonwebtoken header, as in the console's example ticket.
        assert_eq!(
            parts.next().unwrap(),
            "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"
        );
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts.next().unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            r#"{"alg":"RS256","env":"test-env","iat":1758597487691,"exp":1758598087691,"uid":"user_0001","refresh":3600000,"expire":1759202287691}"#
        );
        let verifying = crate::jwt::verifying_key_from_pem(&public).unwrap();
        let claims = crate::jwt::verify_rs256(jwt, &verifying).expect("signature verifies");
        assert_eq!(claims["uid"], "user_0001");
    }

    #[test]
    fn options_and_refusals() {
        let (private, _) = keypair();
        let mut key = KeyFile {
            private_key_id: "k".into(),
            private_key: Secret::new(private),
            env_id: Some("e".into()),
        };
        let t = create_ticket(&key, "abcd", 1000, Some(5), Some(99)).unwrap();
        let payload = t.split('.').nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(json["refresh"], 5);
        assert_eq!(json["expire"], 99);
        assert_eq!(
            create_ticket(&key, "abc", 0, None, None),
            Err(TicketError::BadUid)
        );
        assert_eq!(
            create_ticket(&key, "has space", 0, None, None),
            Err(TicketError::BadUid)
        );
        key.env_id = None;
        assert_eq!(
            create_ticket(&key, "abcd", 0, None, None),
            Err(TicketError::NoEnv)
        );
        key.env_id = Some("e".into());
        key.private_key =
            Secret::new("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n");
        assert_eq!(
            create_ticket(&key, "abcd", 0, None, None),
            Err(TicketError::BadKey)
        );
    }

    #[test]
    fn key_file_errors_do_not_echo_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.json");
        std::fs::write(&path, "{\"private_key\": \"SECRET-PEM\"").unwrap();
        let err = read_key_file(&path).unwrap_err().to_string();
        assert!(!err.contains("SECRET-PEM"), "{err}");
        assert!(read_key_file(&dir.path().join("missing.json")).is_err());
    }
}
