//! Errors of the WAF library. Each says where the problem is and what to do about it.

use std::path::PathBuf;

/// A syntax problem at a line of a rules file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Loading a rule set failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A rules file could not be read.
    #[error("cannot read rules file {path}: {source}; check the path and its permissions")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A directive is invalid.
    #[error("{file}:{line}: {message}")]
    Invalid {
        /// The file (or `<inline>`).
        file: String,
        /// 1-based line.
        line: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// `Include` nests too deeply (probably a loop).
    #[error(
        "Include nests more than {0} levels deep at {1}; check for a file that includes itself"
    )]
    IncludeDepth(usize, String),
}

impl LoadError {
    pub(crate) fn invalid(file: &str, line: usize, message: impl Into<String>) -> Self {
        LoadError::Invalid {
            file: file.to_string(),
            line,
            message: message.into(),
        }
    }
}
