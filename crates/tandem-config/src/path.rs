//! Key paths into the TOML document and their location in the source text.
//!
//! Validation works on typed structs that no longer know where they came from, so every
//! problem is reported with the key path it concerns; this module maps that path back to a
//! line and column by walking a span-preserving parse of the same text (`toml_edit`).

use std::fmt;
use std::ops::Range;

use toml_edit::{Document, Item, Value};

/// One step in a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A dotted path such as `dns.profiles.app.endpoints[1].region`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Seg>);

impl KeyPath {
    /// The document root.
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    /// Whether this is the document root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// This path extended by a key.
    pub fn key(&self, k: impl Into<String>) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.into()));
        KeyPath(v)
    }

    /// This path extended by an array index.
    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        KeyPath(v)
    }

    /// The segments.
    pub fn segments(&self) -> &[Seg] {
        &self.0
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                        && !k.is_empty()
                    {
                        f.write_str(k)?;
                    } else {
                        write!(f, "\"{k}\"")?;
                    }
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A parsed document kept only to answer "where is this key?".
pub(crate) struct Locator {
    doc: Option<Document<String>>,
    src: String,
}

impl Locator {
    pub(crate) fn new(src: &str) -> Self {
        Locator {
            doc: Document::parse(src.to_owned()).ok(),
            src: src.to_owned(),
        }
    }

    /// 1-based (line, column) of a byte offset.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.src.len());
        let before = &self.src[..offset];
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        (line, col)
    }

    /// The span of the deepest part of `path` that exists in the document.
    pub(crate) fn span(&self, path: &KeyPath) -> Option<Range<usize>> {
        let doc = self.doc.as_ref()?;
        let mut best: Option<Range<usize>> = None;
        let mut cur = Cursor::Item(doc.as_item());
        for seg in path.segments() {
            let next = match (seg, &cur) {
                (Seg::Key(k), Cursor::Item(item)) => {
                    let table = item.as_table_like();
                    match table.and_then(|t| t.get_key_value(k)) {
                        Some((key, item)) => {
                            if let Some(s) = key.span() {
                                best = Some(s);
                            }
                            Some(Cursor::Item(item))
                        }
                        None => None,
                    }
                }
                (Seg::Key(k), Cursor::Value(v)) => match v.as_inline_table() {
                    Some(t) => match t.get_key_value(k) {
                        Some((key, v)) => {
                            if let Some(s) = key.span() {
                                best = Some(s);
                            }
                            Some(Cursor::Item(v))
                        }
                        None => None,
                    },
                    None => None,
                },
                (Seg::Index(i), Cursor::Item(item)) => {
                    if let Some(aot) = item.as_array_of_tables() {
                        aot.get(*i).map(|t| {
                            if let Some(s) = t.span() {
                                best = Some(s);
                            }
                            Cursor::Table(t)
                        })
                    } else if let Some(arr) = item.as_array() {
                        arr.get(*i).map(|v| {
                            if let Some(s) = v.span() {
                                best = Some(s);
                            }
                            Cursor::Value(v)
                        })
                    } else {
                        None
                    }
                }
                (Seg::Index(i), Cursor::Value(v)) => {
                    v.as_array().and_then(|a| a.get(*i)).map(|v| {
                        if let Some(s) = v.span() {
                            best = Some(s);
                        }
                        Cursor::Value(v)
                    })
                }
                (Seg::Key(k), Cursor::Table(t)) => match t.get_key_value(k) {
                    Some((key, item)) => {
                        if let Some(s) = key.span() {
                            best = Some(s);
                        }
                        Some(Cursor::Item(item))
                    }
                    None => None,
                },
                (Seg::Index(_), Cursor::Table(_)) => None,
            };
            match next {
                Some(n) => cur = n,
                None => break,
            }
        }
        best
    }

    /// The key path whose key or value contains `offset`, for errors that only carry a span.
    pub(crate) fn path_at(&self, offset: usize) -> KeyPath {
        let Some(doc) = self.doc.as_ref() else {
            return KeyPath::root();
        };
        let mut path = KeyPath::root();
        walk_item(doc.as_item(), offset, &mut path);
        path
    }
}

enum Cursor<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a toml_edit::Table),
}

fn contains(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
}

/// Descend into whichever child contains `offset`, recording the path; stops at the deepest.
fn walk_item(item: &Item, offset: usize, path: &mut KeyPath) -> bool {
    if let Some(table) = item.as_table_like() {
        for (key, child) in table.iter() {
            let key_span = table.get_key_value(key).and_then(|(k, _)| k.span());
            let child_path = path.key(key);
            if contains(key_span, offset) {
                *path = child_path;
                return true;
            }
            let mut deeper = child_path.clone();
            if walk_item(child, offset, &mut deeper) {
                *path = deeper;
                return true;
            }
            if contains(item_span(child), offset) {
                *path = child_path;
                return true;
            }
        }
    }
    if let Some(aot) = item.as_array_of_tables() {
        for (i, t) in aot.iter().enumerate() {
            let mut deeper = path.index(i);
            let as_item = Item::Table(t.clone());
            if walk_item(&as_item, offset, &mut deeper) {
                *path = deeper;
                return true;
            }
        }
    }
    if let Some(arr) = item.as_array() {
        for (i, v) in arr.iter().enumerate() {
            if contains(v.span(), offset) {
                let mut deeper = path.index(i);
                let as_item = Item::Value(v.clone());
                walk_item(&as_item, offset, &mut deeper);
                *path = deeper;
                return true;
            }
        }
    }
    false
}

fn item_span(item: &Item) -> Option<Range<usize>> {
    match item {
        Item::Value(v) => v.span(),
        Item::Table(t) => t.span(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_odd_keys() {
        let p = KeyPath::root()
            .key("dns")
            .key("zones")
            .key("tandem.test")
            .key("ns")
            .index(0);
        assert_eq!(p.to_string(), "dns.zones.\"tandem.test\".ns[0]");
    }

    #[test]
    fn locates_keys_in_tables_arrays_and_inline_tables() {
        let src = "[regions.eastus]\npair = \"westus\"\n\n[[dns.profiles.app.endpoints]]\nname = \"a\"\n\n[[dns.profiles.app.endpoints]]\nname = \"b\"\nregion = \"nowhere\"\nx = { y = 1 }\n";
        let loc = Locator::new(src);
        let p = KeyPath::root()
            .key("dns")
            .key("profiles")
            .key("app")
            .key("endpoints")
            .index(1)
            .key("region");
        let span = loc.span(&p).expect("found");
        assert_eq!(loc.line_col(span.start), (9, 1));
        let p = KeyPath::root().key("regions").key("eastus").key("pair");
        assert_eq!(loc.line_col(loc.span(&p).expect("found").start), (2, 1));
        let p = p.key("missing");
        assert_eq!(
            loc.line_col(loc.span(&p).expect("parent").start).0,
            2,
            "a missing key falls back to its deepest existing parent"
        );
        let inner = KeyPath::root()
            .key("dns")
            .key("profiles")
            .key("app")
            .key("endpoints")
            .index(1)
            .key("x")
            .key("y");
        assert_eq!(
            loc.line_col(loc.span(&inner).expect("found").start),
            (10, 7)
        );
    }

    #[test]
    fn path_at_finds_the_key_under_an_offset() {
        let src = "[regions.eastus]\npair = \"westus\"\nmoed = \"hot\"\n";
        let loc = Locator::new(src);
        let off = src.find("moed").expect("present");
        assert_eq!(loc.path_at(off).to_string(), "regions.eastus.moed");
    }
}
