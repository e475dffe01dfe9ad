//! Configuration errors that name the file, the line and the key, and say how to fix them.

use std::fmt;
use std::path::PathBuf;

use crate::path::KeyPath;

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key the problem is about, e.g. `dns.profiles.app.endpoints[1].region`.
    pub key: KeyPath,
    /// 1-based line of the key in the file, when it could be located.
    pub line: Option<usize>,
    /// 1-based column of the key in the file, when it could be located.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}")?;
            if let Some(col) = self.column {
                write!(f, ", column {col}")?;
            }
            write!(f, ": ")?;
        }
        if !self.key.is_root() {
            write!(f, "`{}`: ", self.key)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n    hint: {hint}")?;
        }
        Ok(())
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error(
        "cannot read config file {path}: {source}\n    hint: check the path given with -c/--config and that the file is readable"
    )]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file was read but is not valid: syntax, types, unknown keys or broken references.
    #[error("{}", render_invalid(file, problems))]
    Invalid {
        /// The file name used in messages (`<built-in lab>` for the embedded default).
        file: String,
        /// Every problem found, in file order.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems of an invalid file (empty for read errors).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

fn render_invalid(file: &str, problems: &[Problem]) -> String {
    let mut out = format!(
        "{file}: {} problem{} found",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str("\n  ");
        out.push_str(file);
        if let Some(line) = p.line {
            out.push(':');
            out.push_str(&line.to_string());
            if let Some(col) = p.column {
                out.push(':');
                out.push_str(&col.to_string());
            }
        }
        out.push_str(": ");
        if !p.key.is_root() {
            out.push('`');
            out.push_str(&p.key.to_string());
            out.push_str("`: ");
        }
        out.push_str(&p.message);
        if let Some(hint) = &p.hint {
            out.push_str("\n      hint: ");
            out.push_str(hint);
        }
    }
    out
}
