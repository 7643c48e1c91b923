//! The emulator's own access-token signing key (generated at start).

use jsonwebtoken::{DecodingKey, EncodingKey};
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::{RsaPrivateKey, RsaPublicKey};

use crate::jwt::{sign_rs256, verify_rs256};
/// The emulator's own token-signing key.
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The `kid` put in every token header.
    pub kid: String,
}

impl TokenSigner {
    /// A fresh 2048-bit key. Takes a fraction of a second; done once per emulator.
    pub fn generate(seed: [u8; 32], kid: String) -> Self {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::from_seed(seed);
        let key = RsaPrivateKey::new(&mut rng, 2048).expect("RSA key generation");
        let der = key.to_pkcs1_der().expect("PKCS#1 encoding");
        let public = RsaPublicKey::from(&key)
            .to_pkcs1_der()
            .expect("PKCS#1 encoding");
        Self {
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            decoding: DecodingKey::from_rsa_der(public.as_bytes()),
            kid,
        }
    }

    /// Signs claims into an access token with header `{"alg":"RS256","kid":…}`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({ "alg": "RS256", "kid": self.kid });
        sign_rs256(&header, claims, &self.encoding).expect("signing with a valid key")
    }

    /// The claims of a token this signer made, or `None`.
    pub fn verify(&self, token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
        verify_rs256(token, &self.decoding)
    }
}
