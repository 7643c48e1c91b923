//! Authenticated encryption as every sealed value here is framed: XChaCha20-Poly1305
//! (RustCrypto), `nonce || ciphertext || tag`, a random 192-bit nonce per message (so no counter
//! is kept), bound to associated data that says what the value is for. [`crate::flow::seal`]
//! seals states and steps with keyring keys; [`crate::store`] seals each stored record under its
//! own key.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::entropy::Entropy;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// A cipher for a 32-byte key.
pub fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

/// `nonce || ciphertext || tag` of `plaintext` under `cipher`, bound to `aad`.
pub fn seal(
    cipher: &XChaCha20Poly1305,
    aad: &[u8],
    plaintext: &[u8],
    entropy: &dyn Entropy,
) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    entropy.fill(&mut nonce);
    let sealed = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        // Encryption fails only for messages beyond 256 GiB.
        .unwrap_or_default();
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// The plaintext of `blob` sealed for `aad` under any of `ciphers`; `None` for anything
/// truncated, altered, sealed for another purpose or under another key.
pub fn open<'a>(
    ciphers: impl IntoIterator<Item = &'a XChaCha20Poly1305>,
    aad: &[u8],
    blob: &[u8],
) -> Option<Vec<u8>> {
    if blob.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, ct) = blob.split_at(NONCE_LEN);
    let nonce = XNonce::from(<[u8; NONCE_LEN]>::try_from(nonce).ok()?);
    ciphers
        .into_iter()
        .find_map(|c| c.decrypt(&nonce, Payload { msg: ct, aad }).ok())
}
