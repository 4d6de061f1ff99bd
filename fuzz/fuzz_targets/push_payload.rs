//! Every sender's parser: any body is parsed or refused, never a panic, and whatever is
//! accepted names a tagged image without a digest.
#![no_main]

use autoredeploy::intake::sources::{Delivery, HeaderMap, SOURCES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let mut headers = HeaderMap::new();
    headers.insert("x-github-event", "package".parse().unwrap());
    headers.insert("x-gitea-event", "package".parse().unwrap());
    let delivery = Delivery { body, headers: &headers };
    for source in &SOURCES {
        if let Ok(announced) = (source.parse)(&delivery) {
            for push in announced.pushes {
                assert!(push.image.tag().is_some());
                assert!(!push.image.is_pinned_by_digest());
            }
        }
    }
});
