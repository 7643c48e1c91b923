//! Randomness, injected. Identifiers and secrets come from an [`Entropy`] so that tests can
//! substitute a seeded source.

use std::sync::Arc;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// A source of random bytes.
pub trait Entropy: Send + Sync + std::fmt::Debug {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]);

    /// A 32-hex-character id shaped like a UUID v4 without dashes, as the official SDK makes
    /// `x-request-id` and `x-device-id`.
    fn hex_id(&self) -> String {
        let mut b = [0u8; 16];
        self.fill(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        hex::encode(b)
    }

    /// `n` random bytes as URL-safe base64 without padding.
    fn token(&self, n: usize) -> String {
        use base64::Engine;
        let mut b = vec![0u8; n];
        self.fill(&mut b);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    /// A uniformly distributed number below `bound` (`bound` > 0).
    fn below(&self, bound: u32) -> u32 {
        // Rejection sampling keeps the distribution uniform.
        let zone = u32::MAX - (u32::MAX % bound);
        loop {
            let mut b = [0u8; 4];
            self.fill(&mut b);
            let v = u32::from_le_bytes(b);
            if v < zone {
                return v % bound;
            }
        }
    }
}

/// A shared entropy handle.
pub type SharedEntropy = Arc<dyn Entropy>;

/// A CSPRNG seeded from the operating system: rand's thread-local generator (ChaCha12,
/// reseeded from the OS periodically). It avoids a system call for every request id.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, buf: &mut [u8]) {
        rand::thread_rng().fill_bytes(buf);
    }
}

/// A deterministic source for tests. Never use it for real secrets.
#[derive(Debug)]
pub struct SeededEntropy(Mutex<StdRng>);

impl SeededEntropy {
    /// A source that yields the same sequence for the same seed.
    pub fn new(seed: u64) -> Self {
        Self(Mutex::new(StdRng::seed_from_u64(seed)))
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, buf: &mut [u8]) {
        self.0.lock().fill_bytes(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_id_is_uuid_v4_shaped() {
        let id = OsEntropy.hex_id();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(&id[12..13], "4");
        assert!(matches!(&id[16..17], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn seeded_entropy_repeats() {
        assert_eq!(
            SeededEntropy::new(7).hex_id(),
            SeededEntropy::new(7).hex_id()
        );
        assert_ne!(
            SeededEntropy::new(7).hex_id(),
            SeededEntropy::new(8).hex_id()
        );
    }

    #[test]
    fn below_stays_in_range() {
        let e = SeededEntropy::new(1);
        for _ in 0..1000 {
            assert!(e.below(10) < 10);
        }
    }
}
