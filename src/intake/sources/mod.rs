//! The senders whose webhooks say an image was pushed, one module each. A sender is its
//! path, the way it proves it may push, and its parser; every parser produces the same
//! [`PushEvent`]s, and nothing past the intake sees a payload.

pub mod dockerhub;

use serde::de::DeserializeOwned;

use crate::domain::{PushEvent, SourceKind, excerpt};

/// How a sender proves it may push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// One of the webhook keys, as `Authorization: Bearer <key>` or, for senders that
    /// cannot set headers, as `?key=<key>`; checked before the body is read.
    Key,
}

/// One sender of push notifications.
#[derive(Debug)]
pub struct Source {
    /// Which sender this is.
    pub kind: SourceKind,
    /// Its route: `POST /<path>`.
    pub path: &'static str,
    /// How it authenticates.
    pub auth: Auth,
    /// Reads its body into the pushes it announces.
    pub parse: fn(&[u8]) -> Result<Vec<PushEvent>, NotAPush>,
}

/// Every sender.
pub static SOURCES: [Source; 1] = [dockerhub::SOURCE];

/// The sender whose route is `POST /<path>`.
pub fn by_path(path: &str) -> Option<&'static Source> {
    SOURCES.iter().find(|source| source.path == path)
}

/// Why a body is not a push. The message is safe to send back to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAPush(pub String);

/// Deepest nesting of arrays and objects accepted; pushes are a few levels deep.
const MAX_DEPTH: usize = 32;

/// Parses a JSON body as `T` (a sender's payload, described as `what`), refusing deep
/// nesting before parsing and quoting at most an excerpt of what it did not expect.
pub fn read_json<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, NotAPush> {
    if nesting_depth(body) > MAX_DEPTH {
        return Err(NotAPush(format!(
            "the body is nested more than {MAX_DEPTH} levels deep; a push is not"
        )));
    }
    serde_json::from_slice(body).map_err(|err| {
        let is_syntax_error = err.is_syntax() || err.is_eof();
        // serde quotes the value it did not expect, which may be as long as the body.
        let err = excerpt(&err.to_string());
        NotAPush(if is_syntax_error {
            format!("the body is not valid JSON: {err}")
        } else {
            format!("the body is not {what}: {err}")
        })
    })
}

/// The deepest nesting of `[` and `{` outside strings (a cheap scan, before parsing).
fn nesting_depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0, false, false);
    for &byte in body {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_has_its_own_path() {
        for source in &SOURCES {
            assert_eq!(by_path(source.path).map(|s| s.kind), Some(source.kind));
        }
        assert!(by_path("nowhere").is_none());
    }
}
