//! The `[lab]` section: the local multi-region lab's demo apps and state directory.

use std::net::SocketAddr;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::ctx::{Ctx, entries};
use crate::path::KeyPath;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLab {
    dir: Option<PathBuf>,
    #[serde(default)]
    apps: IndexMap<String, RawApp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    listen: String,
}

/// The lab, as validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabConfig {
    /// Where the lab keeps its certificate authority, admin token and data.
    pub dir: PathBuf,
    /// One demo app per region.
    pub apps: Vec<LabApp>,
}

/// A region's demo app: an HTTP server that says which region answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabApp {
    /// The region it runs in.
    pub region: String,
    /// Its listen address.
    pub listen: SocketAddr,
}

/// The default lab directory, relative to the working directory.
pub const DEFAULT_LAB_DIR: &str = ".tandem-lab";

pub(crate) fn validate(ctx: &mut Ctx, raw: &RawLab) -> LabConfig {
    let base = KeyPath::root().key("lab");
    let mut apps = Vec::new();
    for (key, region, app) in entries(&base.key("apps"), &raw.apps) {
        ctx.check_region(&key, region);
        if let Some(listen) = ctx.parse(
            &key.key("listen"),
            &app.listen,
            "socket address",
            "\"127.0.1.10:8000\"",
            app.listen.parse::<SocketAddr>(),
        ) {
            apps.push(LabApp {
                region: region.clone(),
                listen,
            });
        }
    }
    LabConfig {
        dir: raw
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LAB_DIR)),
        apps,
    }
}
