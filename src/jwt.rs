//! Compact RS256 JWTs and RSA keys in PEM: what the `ticket` command signs with and what the
//! emulator verifies tickets and signs access tokens with. Header and payload bytes are the
//! caller's: they are serialised in field order, which the ticket format depends on.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rsa::pkcs1::{
    DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey, EncodeRsaPublicKey,
};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::{RsaPrivateKey, RsaPublicKey};

/// Parses an RSA private key in PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE
/// KEY`) PEM into a signing key. Returns `None` for anything else.
pub fn signing_key_from_pem(pem: &str) -> Option<EncodingKey> {
    let key = RsaPrivateKey::from_pkcs8_pem(pem)
        .ok()
        .or_else(|| RsaPrivateKey::from_pkcs1_pem(pem).ok())?;
    let der = key.to_pkcs1_der().ok()?;
    Some(EncodingKey::from_rsa_der(der.as_bytes()))
}

/// Parses an RSA public key in SPKI (`BEGIN PUBLIC KEY`) or PKCS#1 (`BEGIN RSA PUBLIC KEY`)
/// PEM. Returns `None` for anything else.
pub fn verifying_key_from_pem(pem: &str) -> Option<DecodingKey> {
    let key = RsaPublicKey::from_public_key_pem(pem)
        .ok()
        .or_else(|| RsaPublicKey::from_pkcs1_pem(pem).ok())?;
    let der = key.to_pkcs1_der().ok()?;
    Some(DecodingKey::from_rsa_der(der.as_bytes()))
}

/// Signs `header.payload` with RS256 and returns the compact JWT. The header and payload are
/// serialised in field order, so callers control the exact bytes (node's `jsonwebtoken` puts
/// `alg` before `typ`, and the ticket format depends on that).
pub fn sign_rs256(
    header: &serde_json::Value,
    payload: &impl serde::Serialize,
    key: &EncodingKey,
) -> Option<String> {
    let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).ok()?);
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).ok()?);
    let message = format!("{h}.{p}");
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, Algorithm::RS256).ok()?;
    Some(format!("{message}.{sig}"))
}

/// Verifies an RS256 compact JWT and returns its payload; `None` when the token is malformed,
/// not RS256, or the signature does not match. Claims such as `exp` are the caller's to check.
pub fn verify_rs256(
    token: &str,
    key: &DecodingKey,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    if header.get("alg")?.as_str()? != "RS256" {
        return None;
    }
    let message = format!("{h}.{p}");
    if !jsonwebtoken::crypto::verify(s, message.as_bytes(), key, Algorithm::RS256).ok()? {
        return None;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()
}

/// The public half of an RSA private key in PEM, as a verifying key. `None` when `pem` is not
/// an RSA private key.
pub fn verifying_key_from_private_pem(pem: &str) -> Option<DecodingKey> {
    let key = RsaPrivateKey::from_pkcs8_pem(pem)
        .ok()
        .or_else(|| RsaPrivateKey::from_pkcs1_pem(pem).ok())?;
    let der = RsaPublicKey::from(&key).to_pkcs1_der().ok()?;
    Some(DecodingKey::from_rsa_der(der.as_bytes()))
}
