//! Tandem's typed topology and configuration model.
//!
//! This crate owns `tandem.toml`: it parses the file into raw serde structs that reject unknown
//! keys, then validates everything once — types, ranges, and references between sections
//! (an endpoint naming a region, a pair that must be mutual, a profile nesting another) — and
//! hands services a checked [`Config`]. Services never read files or re-check config
//! themselves. Every problem is reported with the file, line, column and dotted key, and a
//! hint that says how to fix it; all problems are reported at once, not only the first.
//!
//! It does not own defaults of running behaviour beyond what the file says (those live with
//! the services), nor any I/O other than reading the one file and checking that referenced
//! files exist.

mod admin;
mod ctx;
pub mod dns;
pub mod edge;
mod error;
pub mod geo;
pub mod lab;
pub mod monitor;
mod path;
pub mod region;
pub mod registry;
pub mod value;
pub mod volume;
pub mod waf;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

pub use admin::{Admin, DEFAULT_ADMIN_LISTEN};
pub use error::{ConfigError, Problem};
pub use path::{KeyPath, Seg};
pub use region::{Mode, Region};

use ctx::Ctx;
use path::Locator;

/// The whole configuration, as validated. Sections that are absent from the file are `None`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The file it was read from, if any.
    pub source: Option<PathBuf>,
    /// Regions in file order.
    pub regions: Vec<Region>,
    /// The admin API.
    pub admin: Admin,
    /// Where clients are.
    pub geo: geo::GeoConfig,
    /// Health monitors by name.
    pub monitors: Vec<monitor::Monitor>,
    /// The global DNS traffic manager.
    pub dns: Option<dns::DnsConfig>,
    /// The edge proxy.
    pub edge: Option<edge::EdgeConfig>,
    /// The web application firewall policies used by the edge.
    pub waf: Option<waf::WafConfig>,
    /// The geo-replicated registry.
    pub registry: Option<registry::RegistryConfig>,
    /// Volume replication.
    pub volume: Option<volume::VolumeConfig>,
    /// The local lab.
    pub lab: Option<lab::LabConfig>,
}

impl Config {
    /// A region by name.
    pub fn region(&self, name: &str) -> Option<&Region> {
        self.regions.iter().find(|r| r.name == name)
    }

    /// The configuration as TOML-like JSON with every secret replaced by `***`.
    pub fn redacted_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    regions: IndexMap<String, region::RawRegion>,
    admin: Option<admin::RawAdmin>,
    geo: Option<geo::RawGeo>,
    #[serde(default)]
    monitors: IndexMap<String, monitor::RawMonitor>,
    dns: Option<dns::RawDns>,
    edge: Option<edge::RawEdge>,
    waf: Option<waf::RawWaf>,
    registry: Option<registry::RawRegistry>,
    volume: Option<volume::RawVolume>,
    lab: Option<lab::RawLab>,
}

/// Read and validate a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut cfg = parse(&src, &path.display().to_string())?;
    cfg.source = Some(path.to_path_buf());
    Ok(cfg)
}

/// Validate config text; `file` is the name used in error messages.
pub fn parse(src: &str, file: &str) -> Result<Config, ConfigError> {
    let locator = Locator::new(src);
    let raw: RawConfig = match toml::from_str(src) {
        Ok(raw) => raw,
        Err(e) => {
            let (key, line, column) = match e.span() {
                Some(span) => {
                    let (l, c) = locator.line_col(span.start);
                    (locator.path_at(span.start), Some(l), Some(c))
                }
                None => (KeyPath::root(), None, None),
            };
            let message = e.message().trim().to_string();
            let hint = syntax_hint(&message);
            return Err(ConfigError::Invalid {
                file: file.to_string(),
                problems: vec![Problem {
                    key,
                    line,
                    column,
                    message,
                    hint,
                }],
            });
        }
    };
    let mut ctx = Ctx {
        regions: raw.regions.keys().cloned().collect(),
        monitors: raw.monitors.keys().cloned().collect(),
        ..Ctx::default()
    };
    geo::collect_locations(raw.geo.as_ref(), &mut ctx.locations);
    ctx.locations
        .extend(raw.regions.values().filter_map(region_location));
    let regions = region::validate(&mut ctx, &raw.regions);
    let admin = admin::validate(&mut ctx, raw.admin.as_ref());
    let geo = geo::validate(&mut ctx, raw.geo.as_ref());
    let monitors = monitor::validate(&mut ctx, &raw.monitors);
    let locations = ctx.locations.clone();
    let dns = raw
        .dns
        .as_ref()
        .map(|d| dns::validate(&mut ctx, d, &monitors, &locations));
    let edge = raw.edge.as_ref().map(|e| edge::validate(&mut ctx, e));
    let waf = raw.waf.as_ref().map(|w| waf::validate(&mut ctx, w));
    if let Some(e) = &edge {
        waf::check_references(&mut ctx, waf.as_ref(), e);
    }
    let registry = raw
        .registry
        .as_ref()
        .map(|r| registry::validate(&mut ctx, r));
    let volume = raw
        .volume
        .as_ref()
        .map(|v| volume::validate(&mut ctx, v, &regions));
    let lab = raw.lab.as_ref().map(|l| lab::validate(&mut ctx, l));

    if !ctx.problems.is_empty() {
        let mut problems: Vec<Problem> = ctx
            .problems
            .into_iter()
            .map(|p| {
                let (line, column) = match locator.span(&p.key) {
                    Some(span) => {
                        let (l, c) = locator.line_col(span.start);
                        (Some(l), Some(c))
                    }
                    None => (None, None),
                };
                Problem {
                    key: p.key,
                    line,
                    column,
                    message: p.message,
                    hint: p.hint,
                }
            })
            .collect();
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        return Err(ConfigError::Invalid {
            file: file.to_string(),
            problems,
        });
    }
    Ok(Config {
        source: None,
        regions,
        admin,
        geo,
        monitors,
        dns,
        edge,
        waf,
        registry,
        volume,
        lab,
    })
}

fn region_location(r: &region::RawRegion) -> Option<String> {
    r.location()
}

fn syntax_hint(message: &str) -> Option<String> {
    if message.starts_with("unknown field") {
        Some("remove the key or fix its spelling; the keys allowed here are listed above and in docs/config.md".into())
    } else if message.starts_with("missing field") {
        Some("add the key; docs/config.md lists what each section needs".into())
    } else if message.starts_with("unknown variant") {
        Some("use one of the values listed above".into())
    } else if message.starts_with("invalid type") {
        Some(
            "check the value's type: strings need quotes, durations are strings like \"10s\""
                .into(),
        )
    } else {
        None
    }
}

/// The built-in lab that `tandem up` runs without `-c` (the text of `examples/lab.toml`).
pub const BUILTIN_LAB: &str = include_str!("../../../examples/lab.toml");

/// The built-in lab, validated.
pub fn builtin_lab() -> Result<Config, ConfigError> {
    parse(BUILTIN_LAB, "<built-in lab>")
}
