//! Repository names, tags and references, and the routing of `/v2/...` paths — pure functions
//! over strings, so the request path can be tested and fuzzed without sockets.

use super::digest::{Digest, DigestError};

/// The longest repository name accepted (the spec: less than 256 characters).
pub const MAX_NAME_LEN: usize = 255;

/// Whether `name` is a valid repository name:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    // First run of alphanumerics.
    let start = i;
    while i < b.len() && alnum(b[i]) {
        i += 1;
    }
    if i == start {
        return false;
    }
    while i < b.len() {
        // A separator: '.', '_', '__', or one or more '-'.
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        let run = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == run {
            return false;
        }
    }
    true
}

/// Whether `tag` is a valid tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'.' | b'_' | b'-'))
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A tag.
    Tag(String),
    /// A digest.
    Digest(Digest),
}

impl Reference {
    /// Parse a reference; anything with a `:` must be a digest.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.contains(':') {
            Digest::parse(s)
                .map(Reference::Digest)
                .map_err(ReferenceError::Digest)
        } else if valid_tag(s) {
            Ok(Reference::Tag(s.to_string()))
        } else {
            Err(ReferenceError::Tag(s.to_string()))
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => write!(f, "{d}"),
        }
    }
}

/// Why a reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// A malformed digest.
    #[error(transparent)]
    Digest(DigestError),
    /// A malformed tag.
    #[error(
        "tag {0:?} is not valid: use up to 128 of [A-Za-z0-9._-], not starting with '.' or '-'"
    )]
    Tag(String),
}

/// What a `/v2/...` path asks for. Names and references are returned raw; handlers validate
/// them so that a bad one gets the spec's error code rather than a 404.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags {
        /// Repository.
        name: &'a str,
    },
    /// `/v2/<name>/manifests/<reference>`
    Manifest {
        /// Repository.
        name: &'a str,
        /// Tag or digest.
        reference: &'a str,
    },
    /// `/v2/<name>/blobs/<digest>`
    Blob {
        /// Repository.
        name: &'a str,
        /// Digest.
        digest: &'a str,
    },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart {
        /// Repository.
        name: &'a str,
    },
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload {
        /// Repository.
        name: &'a str,
        /// Upload session id.
        id: &'a str,
    },
    /// `/v2/<name>/referrers/<digest>`
    Referrers {
        /// Repository.
        name: &'a str,
        /// Subject digest.
        digest: &'a str,
    },
}

/// Route the part of a path after `/v2/`. `None` means no such endpoint.
pub fn route(rest: &str) -> Option<Route<'_>> {
    if rest.is_empty() {
        return Some(Route::Base);
    }
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    // Split off the last one, two or three segments and match them; the name is what is left.
    let (head, last) = rest.rsplit_once('/')?;
    if last == "list"
        && let Some(name) = head.strip_suffix("/tags")
    {
        return Some(Route::Tags { name });
    }
    let (name_part, kind) = head.rsplit_once('/').unwrap_or(("", head));
    match kind {
        "manifests" if !name_part.is_empty() => Some(Route::Manifest {
            name: name_part,
            reference: last,
        }),
        "referrers" if !name_part.is_empty() => Some(Route::Referrers {
            name: name_part,
            digest: last,
        }),
        "uploads" => {
            let name = name_part.strip_suffix("/blobs")?;
            if last.is_empty() {
                Some(Route::UploadStart { name })
            } else {
                Some(Route::Upload { name, id: last })
            }
        }
        "blobs" if !name_part.is_empty() => {
            if last == "uploads" {
                Some(Route::UploadStart { name: name_part })
            } else {
                Some(Route::Blob {
                    name: name_part,
                    digest: last,
                })
            }
        }
        _ => None,
    }
}

/// Whether `name` matches a pattern: `*` (everything), `prefix/*` (anything under the prefix)
/// or an exact name.
pub fn matches_pattern(pattern: &str, name: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "library/ubuntu",
            "a.b_c__d---e/f",
            "0/1/2",
            "my-org/my-app.v2",
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "a..b",
            "a___b",
            "-a",
            "a-",
            "a b",
            "a:b",
            &"a".repeat(256),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn tags() {
        assert!(valid_tag("latest"));
        assert!(valid_tag("_x"));
        assert!(valid_tag("v1.2.3-rc_1"));
        assert!(!valid_tag(".x"));
        assert!(!valid_tag("-x"));
        assert!(!valid_tag(&"a".repeat(129)));
        assert!(valid_tag(&"a".repeat(128)));
    }

    #[test]
    fn routes() {
        assert_eq!(route(""), Some(Route::Base));
        assert_eq!(route("_catalog"), Some(Route::Catalog));
        assert_eq!(route("a/b/tags/list"), Some(Route::Tags { name: "a/b" }));
        assert_eq!(
            route("a/b/manifests/latest"),
            Some(Route::Manifest {
                name: "a/b",
                reference: "latest"
            })
        );
        assert_eq!(
            route("a/blobs/sha256:00"),
            Some(Route::Blob {
                name: "a",
                digest: "sha256:00"
            })
        );
        assert_eq!(
            route("a/blobs/uploads/"),
            Some(Route::UploadStart { name: "a" })
        );
        assert_eq!(
            route("a/blobs/uploads"),
            Some(Route::UploadStart { name: "a" })
        );
        assert_eq!(
            route("x/blobs/y/blobs/uploads/abc"),
            Some(Route::Upload {
                name: "x/blobs/y",
                id: "abc"
            })
        );
        assert_eq!(
            route("r/referrers/sha256:1"),
            Some(Route::Referrers {
                name: "r",
                digest: "sha256:1"
            })
        );
        assert_eq!(route("nothing"), None);
        assert_eq!(route("manifests/x"), None);
    }

    #[test]
    fn patterns() {
        assert!(matches_pattern("*", "a/b"));
        assert!(matches_pattern("public/*", "public/x"));
        assert!(!matches_pattern("public/*", "private/x"));
        assert!(matches_pattern("a/b", "a/b"));
        assert!(!matches_pattern("a/b", "a/bc"));
    }
}
