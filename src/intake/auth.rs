//! The webhook secret, checked in constant time.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The accepted webhook keys, kept only as digests.
///
/// Comparing fixed-length SHA-256 digests in constant time, against every key whatever the
/// outcome, reveals neither the content nor the length of a key to someone timing guesses.
#[derive(Clone)]
pub struct WebhookKey {
    digests: Vec<[u8; 32]>,
}

impl WebhookKey {
    /// Remembers the digests of `keys` (several during a rotation).
    pub fn new(keys: &[SecretString]) -> Self {
        Self {
            digests: keys
                .iter()
                .map(|key| Sha256::digest(key.expose_secret().as_bytes()).into())
                .collect(),
        }
    }

    /// Whether `candidate` is one of the keys.
    pub fn verify(&self, candidate: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        let mut matched = subtle::Choice::from(0);
        for key in &self.digests {
            matched |= digest.ct_eq(key);
        }
        matched.into()
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
        let key = WebhookKey::new(&[SecretString::from("s3cret-key-value")]);
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

    #[test]
    fn during_a_rotation_both_keys_verify() {
        let key = WebhookKey::new(&[
            SecretString::from("old-key-0123456789"),
            SecretString::from("new-key-0123456789"),
        ]);
        assert!(key.verify("old-key-0123456789") && key.verify("new-key-0123456789"));
        assert!(!key.verify("old-key-0123456789,new-key-0123456789"));
    }
}
