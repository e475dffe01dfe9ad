//! Tandem's web application firewall.
//!
//! This crate owns the WAF: a SecLang engine that loads the OWASP Core Rule Set as shipped
//! (rules, data files, `crs-setup.conf`), evaluates it per request in ModSecurity's phases,
//! and Tandem's own policies around it (custom rules evaluated first, modes, exclusions,
//! rate limits, the verdict the edge acts on, logs and metrics). It also owns the CRS
//! regression runner ([`ftw`]) that proves the engine against CRS's own test corpus.
//!
//! It does not own HTTP: the edge (`tandem-edge`) parses requests, buffers bodies up to the
//! policy's limit and calls [`policy::Policy::transaction`]. SQL-injection and XSS detection
//! (`@detectSQLi`, `@detectXSS`) live in `tandem-injection`.
//!
//! Layers, bottom up: [`seclang`] (text to directives), [`transform`], [`operator`],
//! [`pattern`] (regex engines), [`variable`], [`rule`], [`ruleset`] (load and compile),
//! [`body`] (request body processors), [`transaction`] (evaluation), [`policy`] (Tandem's
//! policy and verdicts).

#![forbid(unsafe_code)]

pub mod body;
pub mod error;
pub mod ftw;
pub mod link_results;
pub mod memo;
pub mod metrics;
pub mod operator;
pub mod pattern;
pub mod policies;
pub mod policy;
pub mod prefilter;
pub mod rule;
pub mod ruleset;
pub mod seclang;
pub mod template;
pub mod transaction;
pub mod transform;
pub mod txvars;
pub mod variable;

pub use error::{LoadError, ParseError};
pub use metrics::WafMetrics;
pub use policies::WafPolicies;
pub use policy::{Outcome, Policy, PolicyTransaction, RouteOptions, RoutePolicy, Verdict};
pub use rule::EngineMode;
pub use ruleset::{Loader, RuleSet};
pub use transaction::{Interruption, MatchRecord, RequestHead, Transaction};
