//! Docker's reference grammar (`distribution/reference`), checked byte by byte: which part
//! of a written reference is the registry, the repository path, the tag and the digest.
//!
//! Every character class is ASCII, as in Docker's Go expressions, where `\w` is
//! `[0-9A-Za-z_]`.

/// Longest tag Docker accepts.
const TAG_MAX: usize = 128;

/// A reference as written, split into its parts, each checked against the grammar.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Written<'a> {
    /// Registry host (and port) as written, when the first segment names one: it contains
    /// a `.` or a `:`, or is `localhost`.
    pub domain: Option<&'a str>,
    /// Repository path inside the registry, as written.
    pub path: &'a str,
    /// The tag after the name, without its `:`.
    pub tag: Option<&'a str>,
    /// The digest after `@`, such as `sha256:…`.
    pub digest: Option<&'a str>,
}

/// Splits `reference` into its parts, or says which rule of the grammar it breaks.
pub(super) fn split(reference: &str) -> Result<Written<'_>, &'static str> {
    if reference.is_empty() {
        return Err("the reference is empty");
    }
    let (name_and_tag, digest) = match reference.split_once('@') {
        Some((before, digest)) => (before, Some(check_digest(digest)?)),
        None => (reference, None),
    };
    // A `:` after the last `/` starts the tag; one before it belongs to the registry's port.
    let (name, tag) = match name_and_tag.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(check_tag(tag)?)),
        _ => (name_and_tag, None),
    };
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':']) || first.eq_ignore_ascii_case("localhost") =>
        {
            (Some(check_domain(first)?), rest)
        }
        _ => (None, name),
    };
    check_path(path)?;
    Ok(Written {
        domain,
        path,
        tag,
        digest,
    })
}

/// `[\w][\w.-]{0,127}`.
fn check_tag(tag: &str) -> Result<&str, &'static str> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match tag.as_bytes() {
        [first, rest @ ..]
            if tag.len() <= TAG_MAX
                && word(*first)
                && rest.iter().all(|&b| word(b) || b == b'.' || b == b'-') =>
        {
            Ok(tag)
        }
        _ => Err(
            "the tag is not 1 to 128 of letters, digits, `_`, `.` and `-`, led by one of the first three",
        ),
    }
}

/// `algorithm:hex`, with an algorithm Docker knows and exactly its length of lower-case
/// hex digits.
fn check_digest(digest: &str) -> Result<&str, &'static str> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err("the digest has no `algorithm:` prefix");
    };
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("the digest's algorithm is not sha256, sha384 or sha512"),
    };
    if hex.len() == length && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(digest)
    } else {
        Err("the digest is not its algorithm's length of lower-case hex digits")
    }
}

/// `host[:port]`: dot-separated labels of letters, digits and inner `-`, or a bracketed
/// IPv6 address; the port is digits. Docker also takes for a registry a first segment that
/// is only valid as a path component, such as `my_host.lan`: its grammar reads the whole
/// name as a path, then the `.` makes the first segment the registry.
fn check_domain(domain: &str) -> Result<&str, &'static str> {
    if is_path_component(domain) {
        return Ok(domain);
    }
    // A `:` inside the brackets of an IPv6 address is not the port's.
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (domain, None),
    };
    let host_ok = match host
        .strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
    {
        Some(address) => {
            !address.is_empty() && address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
        }
        None => host.split('.').all(is_host_label),
    };
    let port_ok =
        port.is_none_or(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    if host_ok && port_ok {
        Ok(domain)
    } else {
        Err("the registry is not a host name or [IPv6 address] with an optional port")
    }
}

/// `[a-zA-Z0-9]` or `[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn is_host_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        }
        _ => false,
    }
}

/// Slash-separated components, each `[a-z0-9]+` runs joined by `.`, `_`, `__` or `-`s.
fn check_path(path: &str) -> Result<(), &'static str> {
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("repository names must be lower case");
    }
    if path.split('/').all(is_path_component) {
        Ok(())
    } else {
        Err(
            "the repository path is not `/`-separated runs of a-z and 0-9 joined by `.`, `_`, `__` or `-`",
        )
    }
}

fn is_path_component(component: &str) -> bool {
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut rest = component.as_bytes();
    loop {
        let run = rest.iter().take_while(|b| alphanumeric(b)).count();
        if run == 0 {
            return false;
        }
        rest = &rest[run..];
        let separator = match rest {
            [] => return true,
            [b'.', ..] | [b'_', b'_', ..] => 1 + usize::from(rest[0] == b'_'),
            [b'_', ..] => 1,
            [b'-', ..] => rest.iter().take_while(|&&b| b == b'-').count(),
            _ => return false,
        };
        rest = &rest[separator..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn written<'a>(
        domain: Option<&'a str>,
        path: &'a str,
        tag: Option<&'a str>,
        digest: Option<&'a str>,
    ) -> Written<'a> {
        Written {
            domain,
            path,
            tag,
            digest,
        }
    }

    #[test]
    fn references_split_where_docker_splits_them() {
        let pinned = format!("localhost:5000/team/app:v1@{SHA256}");
        for (text, parts) in [
            ("nginx", written(None, "nginx", None, None)),
            (
                "myorg/api:1.4",
                written(None, "myorg/api", Some("1.4"), None),
            ),
            (
                "registry.example.com:5000/a/b/c",
                written(Some("registry.example.com:5000"), "a/b/c", None, None),
            ),
            (
                "localhost/app",
                written(Some("localhost"), "app", None, None),
            ),
            (
                "[::1]:5000/app:x",
                written(Some("[::1]:5000"), "app", Some("x"), None),
            ),
            (
                "localhost:5000",
                written(None, "localhost", Some("5000"), None),
            ),
            (
                "my_org/web-app__x.y:Tag_1.0-rc",
                written(None, "my_org/web-app__x.y", Some("Tag_1.0-rc"), None),
            ),
            (
                pinned.as_str(),
                written(Some("localhost:5000"), "team/app", Some("v1"), Some(SHA256)),
            ),
        ] {
            assert_eq!(split(text), Ok(parts), "{text}");
        }
    }

    #[test]
    fn what_docker_refuses_is_refused() {
        let long_tag = format!("app:{}", "t".repeat(129));
        for bad in [
            "",
            "nginx:",
            ":tag",
            "nginx:bad tag",
            "nginx:-lead",
            "nginx:tàg",
            long_tag.as_str(),
            "a//b",
            "/a",
            "a/",
            "a..b",
            "a___b",
            "a.-b",
            "-a",
            "a-",
            "UPPER/case",
            "app@sha256:abc",
            "app@md5:0123456789abcdef0123456789abcdef",
            "app@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
            "-host.com/app",
            "host.com:/app",
            "host.com:50a/app",
            "[::1/app",
            "[]/app",
            "[::1]x/app",
            "a:b:c",
            "app@",
        ] {
            assert!(split(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(split(&format!("app:{}", "t".repeat(128))).is_ok());
    }
}
