//! The webhook secret, checked in constant time.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The accepted webhook key, kept only as a digest.
///
/// Comparing fixed-length SHA-256 digests in constant time reveals neither the content nor
/// the length of the key to someone timing wrong guesses.
#[derive(Clone)]
pub struct WebhookKey {
    digest: [u8; 32],
}

impl WebhookKey {
    /// Remembers the digest of `key`.
    pub fn new(key: &SecretString) -> Self {
        Self {
            digest: Sha256::digest(key.expose_secret().as_bytes()).into(),
        }
    }

    /// Whether `candidate` is the key.
    pub fn verify(&self, candidate: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        digest.ct_eq(&self.digest).into()
    }
}

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_key_verifies() {
        let key = WebhookKey::new(&SecretString::from("s3cret-key-value"));
        assert!(key.verify("s3cret-key-value"));
        for wrong in [
            "",
            "s3cret-key-valu",
            "s3cret-key-value ",
            "S3CRET-KEY-VALUE",
        ] {
            assert!(!key.verify(wrong), "{wrong:?}");
        }
        assert_eq!(format!("{key:?}"), "WebhookKey([redacted])");
    }
}
