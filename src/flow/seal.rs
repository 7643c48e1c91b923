//! [`Sealer`]: authenticated encryption (XChaCha20-Poly1305, RustCrypto) with keys from the
//! keyring. The newest key seals; every key opens, so rotating secrets does not break a state
//! or a pending step in flight. A random 192-bit nonce per message, so no counter is kept.
//! Each use passes its own associated data, so a blob sealed for one purpose never opens as
//! another.

use chacha20poly1305::XChaCha20Poly1305;

use crate::entropy::SharedEntropy;
use crate::keyring::Keys;

/// Seals and opens byte strings.
pub struct Sealer {
    ciphers: Vec<XChaCha20Poly1305>,
    entropy: SharedEntropy,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({} keys redacted)", self.ciphers.len())
    }
}

impl Sealer {
    /// A sealer for `keys` (newest first).
    pub fn new(keys: &Keys, entropy: SharedEntropy) -> Sealer {
        Sealer {
            ciphers: keys.raw().iter().map(crate::aead::cipher).collect(),
            entropy,
        }
    }

    /// `nonce || ciphertext || tag` of `plaintext`, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        crate::aead::seal(&self.ciphers[0], aad, plaintext, self.entropy.as_ref())
    }

    /// The plaintext of `blob` sealed for `aad` under any key; `None` for anything truncated,
    /// altered, sealed for another purpose or under an unknown key.
    pub fn open(&self, aad: &[u8], blob: &[u8]) -> Option<Vec<u8>> {
        crate::aead::open(&self.ciphers, aad, blob)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;
    use crate::keyring::Keyring;
    use crate::secret::Secret;
    use std::sync::Arc;

    fn sealer(secrets: &[&str]) -> Sealer {
        let e = SeededEntropy::new(3);
        let secrets: Vec<Secret> = secrets.iter().map(|s| Secret::new(*s)).collect();
        let ring = Keyring::new(Some(&secrets), &e);
        Sealer::new(&ring.derive("t"), Arc::new(SeededEntropy::new(4)))
    }

    #[test]
    fn sealed_blobs_open_only_unaltered_and_for_their_purpose() {
        let s = sealer(&["a".repeat(32).as_str()]);
        let blob = s.seal(b"one", b"hello");
        assert_eq!(s.open(b"one", &blob).as_deref(), Some(&b"hello"[..]));
        assert_eq!(s.open(b"two", &blob), None, "another purpose");
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 1;
            assert_eq!(s.open(b"one", &bad), None, "byte {i} flipped");
        }
        assert_eq!(s.open(b"one", &blob[..blob.len() - 1]), None);
        assert_eq!(s.open(b"one", b""), None);
        assert!(!blob.windows(5).any(|w| w == b"hello"), "encrypted");
    }

    #[test]
    fn old_keys_open_after_rotation() {
        let old = sealer(&["o".repeat(32).as_str()]);
        let rotated = sealer(&["n".repeat(32).as_str(), "o".repeat(32).as_str()]);
        let blob = old.seal(b"p", b"x");
        assert_eq!(rotated.open(b"p", &blob).as_deref(), Some(&b"x"[..]));
        assert_eq!(old.open(b"p", &rotated.seal(b"p", b"y")), None);
    }
}
