//! The webhook payload parser: any body is parsed or refused, never a panic, and whatever is
//! accepted names a tagged image without a digest.
#![no_main]

use autoredeploy::intake::sources::dockerhub::parse_push;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(push) = parse_push(body) {
        assert!(push.image.tag().is_some());
        assert!(!push.image.is_pinned_by_digest());
    }
});
