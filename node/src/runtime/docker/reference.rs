//! Validation of image references against Docker's reference grammar.
//!
//! The daemon would reject a malformed reference too, but with an error that looks like any
//! other bad request; checking first lets the agent report `InvalidImageName` (which it does
//! not retry) rather than `ErrImagePull` (which it backs off and retries). The grammar is the
//! one of the distribution project's `reference` package:
//!
//! ```text
//! reference       := name [ ":" tag ] [ "@" digest ]
//! name            := [domain "/"] path-component ["/" path-component]*
//! domain          := domain-component ["." domain-component]* [":" port]  |  "[" ipv6 "]" [":" port]
//! path-component  := [a-z0-9]+ (separator [a-z0-9]+)*      separator := "." | "_" | "__" | "-"+
//! tag             := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! digest          := algorithm ":" [0-9a-fA-F]{32,}
//! algorithm       := [A-Za-z][A-Za-z0-9]* ([+._-] [A-Za-z][A-Za-z0-9]*)*
//! ```
//!
//! The first slash-separated component is a domain when it contains `.` or `:`, is
//! `localhost`, or has an uppercase letter (Docker's own rule), and the whole name is at most
//! 255 characters.

/// The longest name (domain and path) Docker accepts.
const NAME_MAX_LEN: usize = 255;
/// The longest tag Docker accepts.
const TAG_MAX_LEN: usize = 128;
/// The shortest digest (hex characters) Docker accepts.
const DIGEST_MIN_HEX: usize = 32;

/// Checks `reference` against the grammar; the error says what is wrong with it.
pub(crate) fn validate(reference: &str) -> Result<(), &'static str> {
    if reference.is_empty() {
        return Err("the reference is empty");
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        validate_digest(digest)?;
    }
    // A tag's colon comes after the last slash; a colon before it belongs to a registry port.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].find(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        validate_tag(tag)?;
    }
    validate_name(name)
}

fn validate_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the repository name is empty");
    }
    if name.len() > NAME_MAX_LEN {
        return Err("the repository name is longer than 255 characters");
    }
    let path = match name.split_once('/') {
        Some((first, path)) if is_domain_like(first) => {
            validate_domain(first)?;
            path
        }
        _ => name,
    };
    for component in path.split('/') {
        validate_path_component(component)?;
    }
    Ok(())
}

/// Docker's rule for telling a registry from the first path component.
fn is_domain_like(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost" || first.chars().any(|c| c.is_ascii_uppercase())
}

fn validate_domain(domain: &str) -> Result<(), &'static str> {
    let (host, port) = if let Some(bracketed) = domain.strip_prefix('[') {
        let (ipv6, after) = bracketed.split_once(']').ok_or("the registry's IPv6 address lacks its ']'")?;
        if ipv6.is_empty() || !ipv6.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return Err("the registry's IPv6 address is malformed");
        }
        match after {
            "" => return Ok(()),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err("unexpected characters after the registry's IPv6 address"),
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        for component in host.split('.') {
            let bytes = component.as_bytes();
            let edges_ok = bytes.first().is_some_and(u8::is_ascii_alphanumeric)
                && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
            if !edges_ok || !bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-') {
                return Err("the registry host name is malformed");
            }
        }
    }
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("the registry port is not a number");
    }
    Ok(())
}

fn validate_path_component(component: &str) -> Result<(), &'static str> {
    if component.is_empty() {
        return Err("the repository name has an empty path component");
    }
    if component.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("the repository name must be lowercase");
    }
    let is_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let is_separator = |c: char| matches!(c, '.' | '_' | '-');
    if !component.chars().all(|c| is_alnum(c) || is_separator(c)) {
        return Err("the repository name has a character outside [a-z0-9._-]");
    }
    if !component.starts_with(is_alnum) || !component.ends_with(is_alnum) {
        return Err("a repository path component must start and end with a letter or digit");
    }
    for separator in component.split(is_alnum).filter(|s| !s.is_empty()) {
        let allowed = matches!(separator, "." | "_" | "__") || separator.chars().all(|c| c == '-');
        if !allowed {
            return Err("the repository name has an invalid run of separators");
        }
    }
    Ok(())
}

fn validate_tag(tag: &str) -> Result<(), &'static str> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if tag.is_empty() {
        return Err("the tag is empty");
    }
    if tag.len() > TAG_MAX_LEN {
        return Err("the tag is longer than 128 characters");
    }
    if !tag.starts_with(is_word) || !tag.chars().all(|c| is_word(c) || c == '.' || c == '-') {
        return Err("the tag has a character outside [A-Za-z0-9_.-] or starts with '.' or '-'");
    }
    Ok(())
}

fn validate_digest(digest: &str) -> Result<(), &'static str> {
    let (algorithm, hex) = digest.split_once(':').ok_or("the digest lacks its algorithm")?;
    let components_ok = algorithm.split(['+', '.', '_', '-']).all(|component| {
        component.starts_with(|c: char| c.is_ascii_alphabetic())
            && component.chars().all(|c| c.is_ascii_alphanumeric())
    });
    if !components_ok {
        return Err("the digest algorithm is malformed");
    }
    if hex.len() < DIGEST_MIN_HEX || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("the digest is not at least 32 hexadecimal characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn accepts_valid_references() {
        let with_digest = format!("busybox@{SHA}");
        let tagged_with_digest = format!("registry.example.com:5000/team/app:v1.2@{SHA}");
        let valid = [
            "busybox",
            "busybox:1.36",
            "flotilla/pause:1",
            "library/nginx:latest",
            "localhost/app",
            "localhost:5000/app:dev",
            "registry.example.com/a/b/c",
            "my-registry.io:443/team_x/app__v2.one-two---three:tag_1.0-rc",
            "[::1]:5000/app",
            "[fe80::1]/app:x",
            "Registry.Example/app",
            "a",
            "0",
            with_digest.as_str(),
            tagged_with_digest.as_str(),
        ];
        for reference in valid {
            assert_eq!(validate(reference), Ok(()), "{reference:?} should be valid");
        }
    }

    #[test]
    fn rejects_invalid_references() {
        let long_tag = format!("app:{}", "t".repeat(129));
        let long_name = "a/".repeat(128) + "a";
        let invalid = [
            ("", "empty"),
            ("Busybox", "lowercase"),
            ("team/Busybox", "lowercase"),
            ("busybox:", "tag is empty"),
            ("busybox:.x", "tag has"),
            (long_tag.as_str(), "longer than 128"),
            (long_name.as_str(), "longer than 255"),
            ("bad name", "outside [a-z0-9._-]"),
            ("-app", "start and end"),
            ("app-", "start and end"),
            ("a..b", "separators"),
            ("a___b", "separators"),
            ("a._b", "separators"),
            ("team//app", "empty path component"),
            ("app/", "empty path component"),
            ("/app", "empty path component"),
            (":1", "repository name is empty"),
            ("busybox@sha256:abc", "32 hexadecimal"),
            ("busybox@sha256", "lacks its algorithm"),
            ("busybox@1sha:0123456789abcdef0123456789abcdef", "algorithm is malformed"),
            ("-bad.example.com/app", "host name is malformed"),
            ("example.com:port/app", "port is not a number"),
            ("[::1/app", "lacks its ']'"),
            ("[::1]x/app", "after the registry's IPv6"),
            ("app!:1", "outside [a-z0-9._-]"),
        ];
        for (reference, expected) in invalid {
            let why = validate(reference).expect_err(reference);
            assert!(why.contains(expected), "{reference:?}: {why:?} should mention {expected:?}");
        }
    }

    #[test]
    fn a_registry_port_is_not_taken_for_a_tag() {
        assert_eq!(validate("example.com:5000/app"), Ok(()));
        assert_eq!(validate("example.com:5000/app:1"), Ok(()));
        assert!(validate("example.com:5000/app:").is_err());
    }
}
