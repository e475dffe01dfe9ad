//! `Content-Range` of upload chunks (`<start>-<end>`, inclusive) and `Range` of blob pulls
//! (`bytes=<a>-<b>`, `bytes=<a>-`, `bytes=-<n>`).

/// Parse an upload chunk's `Content-Range`: `^[0-9]+-[0-9]+$` (some clients send
/// `bytes <a>-<b>/*` or `bytes=<a>-<b>`; those are accepted too). Returns `(start, end)`,
/// inclusive.
pub fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let v = v.trim();
    let v = v
        .strip_prefix("bytes=")
        .or_else(|| v.strip_prefix("bytes "))
        .unwrap_or(v);
    let v = v.split('/').next()?;
    let (a, b) = v.split_once('-')?;
    let a: u64 = a.trim().parse().ok()?;
    let b: u64 = b.trim().parse().ok()?;
    (a <= b).then_some((a, b))
}

/// A resolved byte range of a blob of known size: `start..end` (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// What a `Range` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send everything with 200 (also for multi-range requests, which RFC 9110
    /// lets a server ignore).
    Full,
    /// One satisfiable range: 206.
    Partial(ByteRange),
    /// Not satisfiable: 416 with `Content-Range: bytes */<size>`.
    Unsatisfiable,
}

/// Resolve a `Range` header against a blob of `size` bytes.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(h) = header else {
        return RangeRequest::Full;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix range: the last n bytes.
        let Ok(n) = b.parse::<u64>() else {
            return RangeRequest::Full;
        };
        if n == 0 || size == 0 {
            return RangeRequest::Unsatisfiable;
        }
        let n = n.min(size);
        return RangeRequest::Partial(ByteRange {
            start: size - n,
            end: size,
        });
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeRequest::Full;
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    let end = if b.is_empty() {
        size
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e.saturating_add(1).min(size),
            _ => return RangeRequest::Full,
        }
    };
    RangeRequest::Partial(ByteRange { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-9"), Some((0, 9)));
        assert_eq!(parse_content_range("bytes 10-19/*"), Some((10, 19)));
        assert_eq!(parse_content_range("9-0"), None);
        assert_eq!(parse_content_range("x-1"), None);
    }

    #[test]
    fn ranges() {
        let p = |s, n| parse_range(Some(s), n);
        assert_eq!(
            p("bytes=0-9", 100),
            RangeRequest::Partial(ByteRange { start: 0, end: 10 })
        );
        assert_eq!(
            p("bytes=90-", 100),
            RangeRequest::Partial(ByteRange {
                start: 90,
                end: 100
            })
        );
        assert_eq!(
            p("bytes=-10", 100),
            RangeRequest::Partial(ByteRange {
                start: 90,
                end: 100
            })
        );
        assert_eq!(
            p("bytes=50-500", 100),
            RangeRequest::Partial(ByteRange {
                start: 50,
                end: 100
            })
        );
        assert_eq!(p("bytes=100-", 100), RangeRequest::Unsatisfiable);
        assert_eq!(p("bytes=0-1,5-6", 100), RangeRequest::Full);
        assert_eq!(p("items=0-1", 100), RangeRequest::Full);
        assert_eq!(parse_range(None, 100), RangeRequest::Full);
    }
}
