//! Shared state: the Redis connection every Redis-backed store uses ([`redis`]), and the
//! naming and sealing rules they share. The memory backends live next to their stores
//! (sessions, flows, captcha tokens, rate limits); each store picks its backend once, at start.
//!
//! Rules for everything written to Redis: a key never holds a secret (it is a hash of a
//! handle, or a keyed hash of a name), and a value holding a token, password, code, contact or
//! uid is sealed with AEAD, bound to its key's name.

pub mod redis;

/// A store failure (a backend that cannot be reached or answering late), naming the
/// operation; never the library's text. The memory backends never fail.
#[derive(Debug, thiserror::Error)]
#[error("session store unavailable: {0}")]
pub struct StoreError(pub String);

use crate::entropy::{Entropy, SharedEntropy};
use crate::keyring::Keys;

/// Seals each record under its own key: an HMAC, under a keyring key, of the record's name
/// as only its owner knows it (a flow id, a browser's binding), which Redis never sees. So a
/// dump of Redis plus `cookie_secret` opens nothing; the newest key seals, every key opens.
pub struct RecordSealer {
    keys: Keys,
    entropy: SharedEntropy,
}

impl std::fmt::Debug for RecordSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordSealer(redacted)")
    }
}

impl RecordSealer {
    /// Record keys derived from `keys`.
    pub fn new(keys: Keys, entropy: SharedEntropy) -> RecordSealer {
        RecordSealer { keys, entropy }
    }

    /// `plaintext` sealed for the record known to its owner as `owner_name`, bound to `aad`.
    pub fn seal(&self, owner_name: &[u8], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal(
            &self.keys.sign(owner_name),
            aad,
            plaintext,
            self.entropy.as_ref(),
        )
    }

    /// The plaintext of a [`RecordSealer::seal`]ed blob; `None` when it does not open under
    /// any key.
    pub fn open(&self, owner_name: &[u8], aad: &[u8], blob: &[u8]) -> Option<Vec<u8>> {
        self.keys
            .sign_each(owner_name)
            .iter()
            .find_map(|k| open(k, aad, blob))
    }
}

/// `nonce || ciphertext || tag` of `plaintext` under `key`, bound to `aad` (the record's key
/// name, so a value moved to another key does not open).
pub fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8], entropy: &dyn Entropy) -> Vec<u8> {
    crate::aead::seal(&crate::aead::cipher(key), aad, plaintext, entropy)
}

/// The plaintext of a [`seal`]ed blob; `None` when it was altered, truncated, moved to another
/// key or sealed under another key.
pub fn open(key: &[u8; 32], aad: &[u8], blob: &[u8]) -> Option<Vec<u8>> {
    crate::aead::open([&crate::aead::cipher(key)], aad, blob)
}
