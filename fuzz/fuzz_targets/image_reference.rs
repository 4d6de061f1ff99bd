//! The reference normaliser: any text is parsed or refused, never a panic; a parsed
//! reference normalises to itself, and matches its own push unless pinned by digest.
#![no_main]

use autoredeploy::domain::ImageRef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = autoredeploy::platform::rancher::matching::image_of_uuid(text);
    if let Ok(reference) = ImageRef::parse(text) {
        let again = ImageRef::parse(&reference.to_string()).expect("a normalised reference parses");
        assert_eq!(again, reference);
        if !reference.is_pinned_by_digest() {
            assert!(reference.is_updated_by(&reference));
        }
    }
});
