//! The validation context: collects every problem instead of stopping at the first, and knows
//! the names defined elsewhere in the file so sections can check their references.

use indexmap::IndexMap;

use crate::path::KeyPath;

/// A problem before it has been located in the source text.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) key: KeyPath,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

/// Collects problems while sections are validated.
#[derive(Debug, Default)]
pub(crate) struct Ctx {
    pub(crate) problems: Vec<Pending>,
    /// Region names in file order, known before any section is validated.
    pub(crate) regions: Vec<String>,
    /// Monitor names, known before any section is validated.
    pub(crate) monitors: Vec<String>,
    /// Geography: every location name known from regions, networks and the latency table.
    pub(crate) locations: Vec<String>,
}

impl Ctx {
    pub(crate) fn error(
        &mut self,
        key: &KeyPath,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.problems.push(Pending {
            key: key.clone(),
            message: message.into(),
            hint,
        });
    }

    /// Check that `name` names a region; report with a list of the defined ones if not.
    pub(crate) fn check_region(&mut self, key: &KeyPath, name: &str) -> bool {
        if self.regions.iter().any(|r| r == name) {
            return true;
        }
        let hint = if self.regions.is_empty() {
            format!("define the region first: add a [regions.{name}] table at the top of the file")
        } else {
            format!(
                "use one of the defined regions ({}), or add a [regions.{name}] table",
                self.regions.join(", ")
            )
        };
        self.error(key, format!("region {name:?} is not defined"), Some(hint));
        false
    }

    /// Check that `name` names a monitor.
    pub(crate) fn check_monitor(&mut self, key: &KeyPath, name: &str) -> bool {
        if self.monitors.iter().any(|r| r == name) {
            return true;
        }
        let hint = if self.monitors.is_empty() {
            format!("define it: add a [monitors.{name}] table with protocol, path and interval")
        } else {
            format!(
                "use one of the defined monitors ({}), or add a [monitors.{name}] table",
                self.monitors.join(", ")
            )
        };
        self.error(key, format!("monitor {name:?} is not defined"), Some(hint));
        false
    }

    /// Check an identifier's syntax.
    pub(crate) fn check_ident(&mut self, key: &KeyPath, what: &str, name: &str) -> bool {
        if crate::value::is_ident(name) {
            return true;
        }
        self.error(
            key,
            format!("{what} name {name:?} is not a valid name"),
            Some(
                "use 1-63 ASCII letters, digits, '-' or '_', starting with a letter or digit"
                    .into(),
            ),
        );
        false
    }

    /// Record a parse error for a string-typed value (an address, a CIDR).
    pub(crate) fn parse<T, E: std::fmt::Display>(
        &mut self,
        key: &KeyPath,
        value: &str,
        what: &str,
        example: &str,
        r: Result<T, E>,
    ) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(
                    key,
                    format!("{value:?} is not a valid {what} ({e})"),
                    Some(format!("write it like {example}")),
                );
                None
            }
        }
    }
}

/// Iterate an `IndexMap` with the key path of each entry.
pub(crate) fn entries<'a, V>(
    base: &'a KeyPath,
    map: &'a IndexMap<String, V>,
) -> impl Iterator<Item = (KeyPath, &'a String, &'a V)> + 'a {
    map.iter().map(move |(k, v)| (base.key(k), k, v))
}
