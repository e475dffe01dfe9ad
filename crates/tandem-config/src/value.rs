//! Small value types shared by every section: durations written like `500ms`, secrets that
//! never print, status-code ranges, and name syntax checks.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as a string with a unit: `500ms`, `10s`, `2m`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, like \"500ms\" or \"10s\"")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Dur, E> {
                parse_duration(s).map(Dur).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "a duration needs a unit: write \"{n}s\" or \"{n}ms\" instead of {n}"
                )))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "a duration needs a unit: write \"{n}s\" instead of {n}"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

/// Parse `500ms`, `10s`, `1m30s`, `2h`; the error says what was expected.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("invalid duration {s:?} ({e}); write a number with a unit, like \"500ms\", \"10s\" or \"5m\"")
    })
}

/// Render a duration the way it is written in config (`1s500ms` becomes `1.5s`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 && !d.is_zero() {
        format!("{}us", d.as_micros())
    } else if !ms.is_multiple_of(1000) {
        if ms < 1000 {
            format!("{ms}ms")
        } else {
            format!("{}s", d.as_secs_f64())
        }
    } else {
        let s = d.as_secs();
        if s != 0 && s.is_multiple_of(3600) {
            format!("{}h", s / 3600)
        } else if s != 0 && s.is_multiple_of(60) {
            format!("{}m", s / 60)
        } else {
            format!("{s}s")
        }
    }
}

/// A secret (token, password, key) that prints as `***` in Debug, Display and Serialize.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; call only where it is used, never to print.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// An inclusive range of HTTP status codes, written `"200-299"` or `"301"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatusRange {
    /// Lowest accepted code.
    pub lo: u16,
    /// Highest accepted code.
    pub hi: u16,
}

impl StatusRange {
    /// Whether `code` lies in the range.
    pub fn contains(&self, code: u16) -> bool {
        self.lo <= code && code <= self.hi
    }

    /// Parse `"200-299"`, `"204"` or a bare number.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid status range {s:?}; write a code like \"200\" or a range like \"200-299\" (100-599)"
            )
        };
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<u16>().map_err(|_| bad())?,
                b.trim().parse::<u16>().map_err(|_| bad())?,
            ),
            None => {
                let n = s.trim().parse::<u16>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
            return Err(bad());
        }
        Ok(StatusRange { lo, hi })
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            N(u16),
            S(String),
        }
        match Either::deserialize(d)? {
            Either::N(n) => StatusRange::parse(&n.to_string()),
            Either::S(s) => StatusRange::parse(&s),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// Whether `name` is a valid identifier for regions, profiles, monitors and the like:
/// ASCII letters, digits, `-` and `_`, starting with a letter or digit.
pub fn is_ident(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

/// Normalise a DNS name: lowercase, no trailing dot. Returns an error message if invalid.
pub fn normalize_dns_name(name: &str) -> Result<String, String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err("a DNS name cannot be empty".into());
    }
    if trimmed.len() > 253 {
        return Err(format!("DNS name {name:?} is longer than 253 characters"));
    }
    for label in trimmed.split('.') {
        if label.is_empty() {
            return Err(format!(
                "DNS name {name:?} has an empty label (two dots in a row)"
            ));
        }
        if label.len() > 63 {
            return Err(format!(
                "DNS name {name:?} has a label longer than 63 characters"
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*')
        {
            return Err(format!(
                "DNS name {name:?} has a label with characters other than letters, digits, '-' and '_'"
            ));
        }
    }
    Ok(trimmed.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_units() {
        assert_eq!(
            parse_duration("500ms").expect("valid"),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_duration("10s").expect("valid"),
            Duration::from_secs(10)
        );
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("soon").is_err());
        let d: Result<Dur, _> = toml::from_str::<toml::Value>("x = 5")
            .expect("toml")
            .get("x")
            .cloned()
            .expect("x")
            .try_into();
        assert!(d.expect_err("unit required").to_string().contains("\"5s\""));
    }

    #[test]
    fn durations_round_trip_through_format() {
        for s in ["500ms", "10s", "2m", "1h", "1.5s"] {
            let d = parse_duration(s).expect("valid");
            assert_eq!(format_duration(d), s);
        }
    }

    #[test]
    fn status_ranges() {
        let r = StatusRange::parse("200-299").expect("valid");
        assert!(r.contains(204) && !r.contains(301));
        assert!(StatusRange::parse("299-200").is_err());
        assert!(StatusRange::parse("abc").is_err());
        assert!(StatusRange::parse("700").is_err());
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(serde_json::to_string(&s).expect("json"), "\"***\"");
    }

    #[test]
    fn dns_names() {
        assert_eq!(
            normalize_dns_name("App.Tandem.Test.").expect("ok"),
            "app.tandem.test"
        );
        assert!(normalize_dns_name("a..b").is_err());
        assert!(normalize_dns_name("bad name").is_err());
    }
}
