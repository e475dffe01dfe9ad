//! Macro expansion (`%{tx.score}`, `%{MATCHED_VAR}`, `%{REQUEST_HEADERS.host}`): text with
//! references to variables, parsed once at load and expanded against a transaction.

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text.
    Lit(String),
    /// A variable reference: name upper case, key lower case.
    Ref {
        /// Variable or collection name, upper case.
        var: String,
        /// Member name, lower case.
        key: Option<String>,
    },
}

/// Text with `%{...}` references.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parse; text without `%{` is a single literal.
    pub fn parse(s: &str) -> Template {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(p) = rest.find("%{") {
            let Some(end) = rest[p + 2..].find('}') else {
                break;
            };
            if p > 0 {
                parts.push(Part::Lit(rest[..p].to_string()));
            }
            let inner = &rest[p + 2..p + 2 + end];
            let (var, key) = match inner.find(['.', ':']) {
                Some(d) => (&inner[..d], Some(inner[d + 1..].to_ascii_lowercase())),
                None => (inner, None),
            };
            parts.push(Part::Ref {
                var: var.trim().to_ascii_uppercase(),
                key,
            });
            rest = &rest[p + 2 + end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Template { parts }
    }

    /// Whether there is anything to expand.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// The literal bytes without copying, when the template is one piece of text (or empty).
    pub fn as_literal_bytes(&self) -> Option<&[u8]> {
        match self.parts.as_slice() {
            [] => Some(b""),
            [Part::Lit(s)] => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// The literal text, when the template has no references.
    pub fn as_literal(&self) -> Option<String> {
        if self.is_literal() {
            Some(
                self.parts
                    .iter()
                    .map(|p| match p {
                        Part::Lit(s) => s.as_str(),
                        Part::Ref { .. } => "",
                    })
                    .collect(),
            )
        } else {
            None
        }
    }

    /// The parts.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Expand with a resolver for references (unresolved references expand to nothing).
    pub fn expand(&self, resolve: impl FnMut(&str, Option<&str>, &mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        self.expand_into(&mut out, resolve);
        out
    }

    /// [`Template::expand`], appending to `out` (a buffer kept by the caller: no allocation
    /// once it has grown).
    pub fn expand_into(
        &self,
        out: &mut Vec<u8>,
        mut resolve: impl FnMut(&str, Option<&str>, &mut Vec<u8>),
    ) {
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.extend_from_slice(s.as_bytes()),
                Part::Ref { var, key } => resolve(var, key.as_deref(), out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_expand() {
        let t = Template::parse("score %{TX.anomaly_score} from %{remote_addr}!");
        assert!(!t.is_literal());
        let out = t.expand(|v, k, o| o.extend_from_slice(format!("[{v}/{k:?}]").as_bytes()));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "score [TX/Some(\"anomaly_score\")] from [REMOTE_ADDR/None]!"
        );
        assert_eq!(
            Template::parse("plain").as_literal().as_deref(),
            Some("plain")
        );
        assert_eq!(
            Template::parse("50%{").as_literal().as_deref(),
            Some("50%{")
        );
    }
}
