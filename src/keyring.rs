//! The keyring: the configured secrets (or one random secret per process), from which every
//! MAC and encryption key is derived with a purpose label. The first secret signs; every
//! secret verifies, so a new secret put first rotates keys without signing anyone out.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::entropy::Entropy;
use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Derived 32-byte keys for one purpose, newest first.
#[derive(Clone)]
pub struct Keys(Vec<[u8; 32]>);

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({} redacted)", self.0.len())
    }
}

/// The root secrets.
#[derive(Clone)]
pub struct Keyring {
    roots: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({} redacted)", self.roots.len())
    }
}

impl Keyring {
    /// A keyring of the configured secrets, or of one random secret when none are configured.
    pub fn new(secrets: Option<&[Secret]>, entropy: &dyn Entropy) -> Keyring {
        let roots = match secrets {
            Some(s) if !s.is_empty() => s.iter().map(|s| s.expose().as_bytes().to_vec()).collect(),
            _ => {
                let mut random = vec![0u8; 32];
                entropy.fill(&mut random);
                vec![random]
            }
        };
        Keyring { roots }
    }

    /// The keys for `purpose` (e.g. `"session-cookie"`), one per root secret, newest first.
    pub fn derive(&self, purpose: &str) -> Keys {
        Keys(
            self.roots
                .iter()
                .map(|root| {
                    let mut mac = HmacSha256::new_from_slice(root).expect("any key length");
                    mac.update(b"cloudbase-gateway/v1/");
                    mac.update(purpose.as_bytes());
                    mac.finalize().into_bytes().into()
                })
                .collect(),
        )
    }
}

impl Keys {
    /// The raw keys, newest first (for the AEAD in [`crate::flow::seal`]).
    pub fn raw(&self) -> &[[u8; 32]] {
        &self.0
    }

    /// HMAC-SHA256 of `data` with the newest key.
    pub fn sign(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.0[0]).expect("any key length");
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// HMAC-SHA256 of `data` under each key, newest first (keys derived per record).
    pub fn sign_each(&self, data: &[u8]) -> Vec<[u8; 32]> {
        self.0
            .iter()
            .map(|k| {
                let mut mac = HmacSha256::new_from_slice(k).expect("any key length");
                mac.update(data);
                mac.finalize().into_bytes().into()
            })
            .collect()
    }

    /// Whether `tag` is the HMAC of `data` under any key (constant-time per key).
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        self.0.iter().any(|k| {
            let mut mac = HmacSha256::new_from_slice(k).expect("any key length");
            mac.update(data);
            mac.verify_slice(tag).is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;

    #[test]
    fn old_keys_verify_and_purposes_differ() {
        let e = SeededEntropy::new(1);
        let old = Keyring::new(Some(&[Secret::new("o".repeat(32))]), &e);
        let rotated = Keyring::new(
            Some(&[Secret::new("n".repeat(32)), Secret::new("o".repeat(32))]),
            &e,
        );
        let tag = old.derive("a").sign(b"data");
        assert!(rotated.derive("a").verify(b"data", &tag));
        assert!(!rotated.derive("b").verify(b"data", &tag));
        assert!(!old.derive("a").verify(b"datA", &tag));
        assert_ne!(
            rotated.derive("a").sign(b"data"),
            tag,
            "the newest key signs"
        );
        let random = Keyring::new(None, &e);
        assert!(!random.derive("a").verify(b"data", &tag));
    }
}
