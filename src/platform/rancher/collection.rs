//! Splits a collection document into its entries while it arrives, so that a page of
//! thousands of services never has to be held in memory whole.
//!
//! The splitter only finds where each entry of the top-level `data` array begins and ends
//! (tracking nesting and strings); the entries themselves are decoded by serde, one at a
//! time. It also keeps the `pagination` object, which Rancher sends after `data`.

/// Largest single entry (or `pagination` value) held while it arrives; a service is a few
/// kilobytes.
pub(super) const MAX_ENTRY: usize = 16 << 20;

/// Longest top-level key remembered; longer keys are neither `data` nor `pagination`.
const MAX_KEY: usize = 32;

/// A second `data` or `pagination` would make the document mean two things.
const TWICE: &str = "not a collection: a top-level field appears twice";

/// What a top-level value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Data,
    Pagination,
    Other,
}

/// What is being copied out of the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    Nothing,
    /// An entry of `data`; `scalar` when it is not an object or array.
    Entry {
        scalar: bool,
    },
    /// The `pagination` value.
    Pagination {
        scalar: bool,
    },
}

/// Fed with the chunks of a collection document, hands out the raw JSON of each `data`
/// entry as soon as its last byte has arrived.
#[derive(Debug)]
pub struct CollectionSplitter {
    /// Nesting of objects and arrays outside strings; the document itself is depth 1.
    depth: usize,
    /// Whether the document's opening brace has been seen.
    started: bool,
    /// Whether its closing brace has been seen.
    finished: bool,
    in_string: bool,
    escaped: bool,
    /// At depth 1: a key comes next (after `{` or `,`).
    expect_key: bool,
    /// At depth 1: the value of `field` comes next (after `:`).
    expect_value: bool,
    /// Inside a key string at depth 1.
    reading_key: bool,
    key: Vec<u8>,
    field: Field,
    /// Inside the `data` array.
    in_data: bool,
    seen_data: bool,
    capture: Capture,
    /// The bytes of the capture so far, from earlier chunks.
    captured: Vec<u8>,
    pagination: Option<Vec<u8>>,
}

impl Default for CollectionSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl CollectionSplitter {
    /// A splitter at the start of a document.
    pub fn new() -> Self {
        Self {
            depth: 0,
            started: false,
            finished: false,
            in_string: false,
            escaped: false,
            expect_key: false,
            expect_value: false,
            reading_key: false,
            key: Vec::with_capacity(MAX_KEY),
            field: Field::Other,
            in_data: false,
            seen_data: false,
            capture: Capture::Nothing,
            captured: Vec::new(),
            pagination: None,
        }
    }

    /// Reads the next chunk of the document, calling `entry` with each `data` entry it
    /// completes. Fails when the bytes cannot be a collection document.
    pub fn feed(&mut self, chunk: &[u8], entry: &mut impl FnMut(&[u8])) -> Result<(), String> {
        // Where the capture in progress starts in this chunk (0 when it began earlier).
        let mut from = 0;
        for (at, &byte) in chunk.iter().enumerate() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                    // An escaped key is never `data` or `pagination` as far as this
                    // splitter is concerned: keep it from matching.
                    if self.reading_key {
                        self.key.push(byte);
                    }
                } else if byte == b'"' {
                    self.in_string = false;
                    self.reading_key = false;
                } else if self.reading_key && self.key.len() < MAX_KEY {
                    self.key.push(byte);
                }
                continue;
            }
            if byte.is_ascii_whitespace() {
                continue;
            }
            if self.finished {
                return Err("more data after the end of the collection".into());
            }
            if !self.started {
                if byte != b'{' {
                    return Err("not a collection: the answer is not a JSON object".into());
                }
                self.started = true;
                self.depth = 1;
                self.expect_key = true;
                continue;
            }
            // The first byte of a value: the value of a top-level key, or a `data` entry.
            if self.expect_value {
                self.expect_value = false;
                match self.field {
                    Field::Data if self.seen_data => return Err(TWICE.into()),
                    Field::Pagination if self.pagination.is_some() => return Err(TWICE.into()),
                    Field::Data if byte == b'[' => {
                        self.in_data = true;
                        self.seen_data = true;
                    }
                    Field::Data => return Err("not a collection: `data` is not an array".into()),
                    Field::Pagination => {
                        self.capture = Capture::Pagination {
                            scalar: !matches!(byte, b'{' | b'['),
                        };
                        from = at;
                    }
                    Field::Other => {}
                }
            } else if self.in_data
                && self.depth == 2
                && self.capture == Capture::Nothing
                && !matches!(byte, b',' | b']')
            {
                self.capture = Capture::Entry {
                    scalar: !matches!(byte, b'{' | b'['),
                };
                from = at;
            }
            match byte {
                b'"' => {
                    self.in_string = true;
                    if self.depth == 1 && self.expect_key {
                        self.reading_key = true;
                        self.key.clear();
                    }
                }
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    // A scalar ends before the bracket that closes its container.
                    if self.depth == 2 && self.capture == (Capture::Entry { scalar: true }) {
                        self.end_entry(&chunk[from..at], entry);
                    }
                    if self.depth == 1 && self.capture == (Capture::Pagination { scalar: true }) {
                        self.end_pagination(&chunk[from..at]);
                    }
                    self.depth -= 1;
                    match self.depth {
                        0 => self.finished = true,
                        1 if self.in_data => self.in_data = false,
                        1 if self.capture == (Capture::Pagination { scalar: false }) => {
                            self.end_pagination(&chunk[from..=at]);
                        }
                        2 if self.capture == (Capture::Entry { scalar: false }) => {
                            self.end_entry(&chunk[from..=at], entry);
                        }
                        _ => {}
                    }
                }
                b',' => {
                    if self.depth == 1 {
                        if self.capture == (Capture::Pagination { scalar: true }) {
                            self.end_pagination(&chunk[from..at]);
                        }
                        self.expect_key = true;
                    } else if self.depth == 2 && self.capture == (Capture::Entry { scalar: true }) {
                        self.end_entry(&chunk[from..at], entry);
                    }
                }
                b':' if self.depth == 1 => {
                    self.expect_key = false;
                    self.expect_value = true;
                    self.field = match self.key.as_slice() {
                        b"data" => Field::Data,
                        b"pagination" => Field::Pagination,
                        _ => Field::Other,
                    };
                }
                _ => {}
            }
        }
        if self.capture != Capture::Nothing {
            self.captured.extend_from_slice(&chunk[from..]);
            if self.captured.len() > MAX_ENTRY {
                return Err(format!(
                    "an entry of the collection is larger than {} MiB",
                    MAX_ENTRY >> 20
                ));
            }
        }
        Ok(())
    }

    /// Ends the document: returns the raw `pagination` value, if there was one. Fails when
    /// the document was cut short or had no `data` array.
    pub fn finish(self) -> Result<Option<Vec<u8>>, String> {
        if !self.finished {
            return Err("the collection ended before it was complete".into());
        }
        if !self.seen_data {
            return Err("not a collection: no `data` array".into());
        }
        Ok(self.pagination)
    }

    fn end_entry(&mut self, tail: &[u8], entry: &mut impl FnMut(&[u8])) {
        if self.captured.is_empty() {
            entry(tail);
        } else {
            self.captured.extend_from_slice(tail);
            entry(&self.captured);
            self.captured.clear();
        }
        self.capture = Capture::Nothing;
    }

    fn end_pagination(&mut self, tail: &[u8]) {
        let mut value = std::mem::take(&mut self.captured);
        value.extend_from_slice(tail);
        self.pagination = Some(value);
        self.capture = Capture::Nothing;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// Splits `document` fed in chunks of `chunk` bytes.
    fn split(document: &[u8], chunk: usize) -> Result<(Vec<Value>, Option<Value>), String> {
        let mut splitter = CollectionSplitter::new();
        let mut entries = Vec::new();
        for part in document.chunks(chunk.max(1)) {
            splitter.feed(part, &mut |raw| {
                entries.push(serde_json::from_slice(raw).expect("an entry is whole JSON"))
            })?;
        }
        let pagination = splitter
            .finish()?
            .map(|raw| serde_json::from_slice(&raw).unwrap());
        Ok((entries, pagination))
    }

    #[test]
    fn entries_and_pagination_come_out_whatever_the_chunks() {
        let document = json!({
            "type": "collection",
            "links": { "self": "http://r/v1/services?data=[1]" },
            "data": [
                { "id": "1s1", "name": "a \"quoted\" } ] name", "launchConfig": { "labels": { "data": "[" } } },
                [1, 2],
                "text, with ] brackets",
                7,
                null,
                { "id": "1s2", "nested": [[{}], {"x": [ ]}] }
            ],
            "sortLinks": { "pagination": "x" },
            "pagination": { "next": "http://r/v1/services?limit=3000&marker=m3000", "limit": 3000 },
            "filters": {}
        });
        let bytes = serde_json::to_vec_pretty(&document).unwrap();
        for chunk in [1, 2, 3, 7, 64, bytes.len()] {
            let (entries, pagination) = split(&bytes, chunk).unwrap();
            assert_eq!(Value::Array(entries), document["data"], "chunks of {chunk}");
            assert_eq!(pagination.as_ref(), Some(&document["pagination"]));
        }
    }

    #[test]
    fn an_endless_entry_is_refused_instead_of_held() {
        let mut splitter = CollectionSplitter::new();
        splitter.feed(br#"{"data":[{"pad":""#, &mut |_| {}).unwrap();
        let chunk = vec![b'x'; 1 << 20];
        let refused = (0..20).find_map(|_| splitter.feed(&chunk, &mut |_| {}).err());
        assert!(refused.is_some_and(|error| error.contains("larger than 16 MiB")));
    }

    #[test]
    fn escaped_keys_are_never_taken_for_data() {
        let document = r#"{"data\n":[{"evil":1}],"\"data":[{"evil":2}],"data":[{"id":"1s1"}]}"#;
        let (entries, _) = split(document.as_bytes(), 4).unwrap();
        assert_eq!(entries, [serde_json::json!({ "id": "1s1" })]);
    }

    #[test]
    fn a_scalar_pagination_and_an_empty_page() {
        for (document, pagination) in [
            (r#"{"data":[],"pagination":null}"#, Some(Value::Null)),
            (r#"{"pagination":null,"data":[ ]}"#, Some(Value::Null)),
            (r#"{"data":[]}"#, None),
        ] {
            for chunk in [1, 5, 100] {
                let (entries, found) = split(document.as_bytes(), chunk).unwrap();
                assert!(entries.is_empty());
                assert_eq!(found, pagination, "{document}");
            }
        }
    }

    #[test]
    fn what_is_not_a_whole_collection_is_refused() {
        for (document, expected) in [
            ("<html>bad gateway</html>", "not a JSON object"),
            (r#"{"data":{}}"#, "`data` is not an array"),
            (r#"{"items":[]}"#, "no `data` array"),
            (r#"{"data":[{"id":"1s1"}"#, "ended before"),
            (r#"{"data":[]}}"#, "after the end"),
            (r#"{"data":[]} {}"#, "after the end"),
            (r#"{"data":[],"data":[{"id":"x"}]}"#, "appears twice"),
            (
                r#"{"data":[],"pagination":null,"pagination":{}}"#,
                "appears twice",
            ),
        ] {
            let error = split(document.as_bytes(), 3).expect_err(document);
            assert!(error.contains(expected), "{document}: {error}");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    /// Any JSON value, a few levels deep, with strings full of brackets, quotes and escapes.
    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[\\[\\]{}\",:\\\\a-z ]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                proptest::collection::btree_map("(data|pagination|[a-z\\[{\"]{1,6})", inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_collection_splits_into_its_entries_whatever_the_chunks(
            data in proptest::collection::vec(json(), 0..8),
            before in json(),
            after in json(),
            chunk in 1usize..40,
            pretty in any::<bool>(),
        ) {
            let document = serde_json::json!({
                "links": before,
                "data": data,
                "pagination": after,
            });
            let bytes = if pretty {
                serde_json::to_vec_pretty(&document).unwrap()
            } else {
                serde_json::to_vec(&document).unwrap()
            };
            let mut splitter = CollectionSplitter::new();
            let mut entries = Vec::new();
            for part in bytes.chunks(chunk) {
                splitter
                    .feed(part, &mut |raw| entries.push(serde_json::from_slice::<Value>(raw).unwrap()))
                    .unwrap();
            }
            let pagination = splitter.finish().unwrap().unwrap();
            prop_assert_eq!(Value::Array(entries), document["data"].clone());
            prop_assert_eq!(serde_json::from_slice::<Value>(&pagination).unwrap(), document["pagination"].clone());
        }

        #[test]
        fn any_bytes_are_split_or_refused_without_panicking(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut splitter = CollectionSplitter::new();
            if splitter.feed(&bytes, &mut |_| {}).is_ok() {
                let _ = splitter.finish();
            }
        }
    }
}
