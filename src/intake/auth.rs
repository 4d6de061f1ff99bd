//! The webhook keys and the senders' signatures, checked in constant time.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use warp::http::{HeaderMap, HeaderValue, header};

/// The accepted webhook keys.
///
/// A key is compared as a fixed-length SHA-256 digest in constant time, against every key
/// whatever the outcome, which reveals neither the content nor the length of a key to
/// someone timing guesses. The keys themselves are kept for the senders that sign with one.
#[derive(Clone)]
pub struct WebhookKey {
    digests: Vec<[u8; 32]>,
    /// The keys themselves, for senders that sign with one (JFrog).
    keys: Vec<SecretString>,
}

impl WebhookKey {
    /// Remembers the digests of `keys` (several during a rotation).
    pub fn new(keys: &[SecretString]) -> Self {
        Self {
            digests: keys
                .iter()
                .map(|key| Sha256::digest(key.expose_secret().as_bytes()).into())
                .collect(),
            keys: keys.to_vec(),
        }
    }

    /// Whether `signature` is the hex HMAC-SHA256 of `body` keyed with one of the keys.
    pub fn signed(&self, body: &[u8], signature: &str) -> bool {
        let mut matched = false;
        for key in &self.keys {
            matched |= hmac_matches(key.expose_secret().as_bytes(), body, signature);
        }
        matched
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

/// `headers` with a bare `Authorization: <key>` written as `Bearer <key>`, as every other
/// route reads it.
pub(super) fn bare_key_as_bearer(headers: &HeaderMap) -> HeaderMap {
    let mut headers = headers.clone();
    let bare = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.starts_with("Bearer "))
        .and_then(|key| HeaderValue::from_str(&format!("Bearer {key}")).ok());
    if let Some(mut bearer) = bare {
        bearer.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, bearer);
    }
    headers
}

/// Whether `signature` (hex, either case) is the HMAC-SHA256 of `body` keyed with
/// `secret`; compared in constant time.
pub fn hmac_matches(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Ok(expected) = hex::decode(signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_s_own_test_vector_verifies() {
        // From GitHub's documentation on validating deliveries.
        let secret = b"It's a Secret to Everybody";
        let signature = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(hmac_matches(secret, b"Hello, World!", signature));
        assert!(hmac_matches(
            secret,
            b"Hello, World!",
            &signature.to_uppercase()
        ));
        assert!(!hmac_matches(secret, b"Hello, World?", signature));
        assert!(!hmac_matches(
            b"another secret",
            b"Hello, World!",
            signature
        ));
        assert!(!hmac_matches(secret, b"Hello, World!", "not hex"));
        assert!(!hmac_matches(secret, b"Hello, World!", &signature[..62]));
    }

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
