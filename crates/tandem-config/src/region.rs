//! Regions: the topology everything else refers to. Regions come first in the file, and every
//! other section names them.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::ctx::{Ctx, entries};
use crate::path::KeyPath;

/// How a region takes part in serving: the reference architecture's hot/hot, hot/warm and
/// hot/cold patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Serves traffic all the time.
    #[default]
    Hot,
    /// Runs everything, scaled down; takes traffic on failover.
    Warm,
    /// Has data replicated but runs nothing until failover.
    Cold,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegion {
    pair: Option<String>,
    #[serde(default)]
    mode: Mode,
    location: Option<String>,
}

/// A region, as validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Region {
    /// The region's name (`eastus`).
    pub name: String,
    /// Its paired region, if any. Pairs are always mutual.
    pub pair: Option<String>,
    /// Hot, warm or cold.
    pub mode: Mode,
    /// Where the region is, as a location name of the `[geo]` section; used by
    /// performance routing.
    pub location: Option<String>,
}

impl RawRegion {
    pub(crate) fn location(&self) -> Option<String> {
        self.location.clone()
    }
}

pub(crate) fn validate(ctx: &mut Ctx, raw: &IndexMap<String, RawRegion>) -> Vec<Region> {
    let base = KeyPath::root().key("regions");
    let mut out = Vec::new();
    for (key, name, r) in entries(&base, raw) {
        ctx.check_ident(&key, "region", name);
        if let Some(pair) = &r.pair {
            let pk = key.key("pair");
            if pair == name {
                ctx.error(
                    &pk,
                    format!("region {name:?} cannot be its own pair"),
                    Some("name a different region, or remove `pair`".into()),
                );
            } else if ctx.check_region(&pk, pair) {
                let back = raw.get(pair).and_then(|p| p.pair.as_deref());
                if back != Some(name.as_str()) {
                    let hint = format!(
                        "pairs are mutual: set `pair = \"{name}\"` under [regions.{pair}]{}",
                        back.map(|b| format!(" (it is \"{b}\" now)"))
                            .unwrap_or_default()
                    );
                    ctx.error(
                        &pk,
                        format!("region {name:?} names {pair:?} as its pair, but {pair:?} does not name {name:?} back"),
                        Some(hint),
                    );
                }
            }
        }
        out.push(Region {
            name: name.clone(),
            pair: r.pair.clone(),
            mode: r.mode,
            location: r.location.clone(),
        });
    }
    out
}
