//! The `[volume]` section: which directories are replicated, to which repository in the paired
//! region, how often, how long snapshots are kept, and where the warm standby lives. Its keys
//! are documented in docs/config.md.

use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::ctx::{Ctx, entries};
use crate::path::KeyPath;
use crate::region::Region;
use crate::value::{Dur, Secret};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVolume {
    state_dir: Option<PathBuf>,
    #[serde(default)]
    volumes: IndexMap<String, RawVol>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVol {
    region: String,
    source: PathBuf,
    repository: String,
    repository_region: Option<String>,
    #[serde(default)]
    repository_options: IndexMap<String, String>,
    password: Option<Secret>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    interval: Option<Dur>,
    scan_interval: Option<Dur>,
    lag_alert: Option<Dur>,
    bandwidth: Option<String>,
    concurrency: Option<usize>,
    compression: Option<i32>,
    #[serde(default)]
    exclude: Vec<String>,
    pre_hook: Option<Vec<String>>,
    post_hook: Option<Vec<String>>,
    hook_timeout: Option<Dur>,
    retention: Option<RawRetention>,
    standby: Option<RawStandby>,
    reverse: Option<RawReverse>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    keep_last: Option<u32>,
    keep_hourly: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    prune_interval: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStandby {
    dir: PathBuf,
    region: Option<String>,
    poll_interval: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReverse {
    repository: String,
    region: Option<String>,
    #[serde(default)]
    repository_options: IndexMap<String, String>,
}

/// The `[volume]` section, as validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumeConfig {
    /// Where the agent keeps its local state (markers, status, the repository cache).
    pub state_dir: PathBuf,
    /// The replicated volumes, in file order.
    pub volumes: Vec<Volume>,
}

impl VolumeConfig {
    /// A volume by name.
    pub fn volume(&self, name: &str) -> Option<&Volume> {
        self.volumes.iter().find(|v| v.name == name)
    }
}

/// One replicated directory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Volume {
    /// The volume's name; also the label of its snapshots.
    pub name: String,
    /// The region whose directory is replicated.
    pub region: String,
    /// The directory (a persistent volume's mount) that is replicated.
    pub source: PathBuf,
    /// Where snapshots go: a repository in the paired region.
    pub repository: Repository,
    /// The repository password.
    pub password: Password,
    /// The shortest time between two snapshots.
    pub interval: Duration,
    /// How often the whole directory is scanned even without change events.
    pub scan_interval: Duration,
    /// Replication lag above which the volume is reported as alerting.
    pub lag_alert: Duration,
    /// Upload limit in bytes per second; `None` for no limit.
    pub bandwidth: Option<u64>,
    /// Uploads in flight at once.
    pub concurrency: usize,
    /// zstd level of the repository (`0` for no compression).
    pub compression: i32,
    /// Glob patterns (gitignore syntax) of paths that are not replicated.
    pub exclude: Vec<String>,
    /// Commands run around each snapshot.
    pub hooks: Hooks,
    /// What is kept; `None` keeps every snapshot.
    pub retention: Option<Retention>,
    /// The warm standby in the paired region.
    pub standby: Option<Standby>,
    /// The repository in this volume's own region that `reverse` replicates into after a
    /// failover.
    pub reverse: Option<Repository>,
}

/// A repository location.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Repository {
    /// The region the repository lives in.
    pub region: String,
    /// A directory path, or an object-store URL (`s3://bucket/prefix`, `az://container/prefix`,
    /// `gs://bucket/prefix`, `file:///path`).
    pub location: String,
    /// Object-store options (`aws_endpoint`, `aws_region`, `allow_http`, ...). Credentials come
    /// from the environment (`AWS_ACCESS_KEY_ID`, ...), never from this file.
    pub options: IndexMap<String, String>,
}

/// Where the repository password comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Password {
    /// Written in the config (redacted when printed).
    Value(Secret),
    /// Read from this environment variable when the volume starts.
    Env(String),
    /// Read from this file (first line) when the volume starts.
    File(PathBuf),
}

/// Pre- and post-snapshot commands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hooks {
    /// Run before reading the directory (e.g. flush or freeze the application); a failure
    /// skips the snapshot.
    pub pre: Option<Vec<String>>,
    /// Run after the snapshot, whether it succeeded or not (e.g. thaw).
    pub post: Option<Vec<String>>,
    /// How long a hook may run before it is killed.
    pub timeout: Duration,
}

/// Which snapshots are kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Retention {
    /// Keep the newest N snapshots.
    pub keep_last: u32,
    /// Keep the newest snapshot of each of the last N hours.
    pub keep_hourly: u32,
    /// Keep the newest snapshot of each of the last N days.
    pub keep_daily: u32,
    /// Keep the newest snapshot of each of the last N weeks.
    pub keep_weekly: u32,
    /// How often forget and prune run.
    pub prune_interval: Duration,
}

/// The warm standby: a directory in the paired region kept restored to the newest snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Standby {
    /// The region the standby runs in.
    pub region: String,
    /// The directory kept restored.
    pub dir: PathBuf,
    /// How often the repository is checked for a newer snapshot.
    pub poll_interval: Duration,
}

/// Where the agent keeps state by default.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/tandem/volume";
/// The default shortest time between snapshots.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

pub(crate) fn validate(ctx: &mut Ctx, raw: &RawVolume, regions: &[Region]) -> VolumeConfig {
    let base = KeyPath::root().key("volume");
    let mut volumes = Vec::new();
    for (key, name, v) in entries(&base.key("volumes"), &raw.volumes) {
        ctx.check_ident(&key, "volume", name);
        volumes.push(validate_volume(ctx, &key, name, v, regions));
    }
    let state_dir = raw
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    if state_dir.as_os_str().is_empty() {
        ctx.error(
            &base.key("state_dir"),
            "state_dir is empty",
            Some(format!(
                "name a directory the agent may write, e.g. \"{DEFAULT_STATE_DIR}\""
            )),
        );
    }
    VolumeConfig { state_dir, volumes }
}

fn pair_of<'a>(regions: &'a [Region], name: &str) -> Option<&'a str> {
    regions
        .iter()
        .find(|r| r.name == name)
        .and_then(|r| r.pair.as_deref())
}

fn validate_volume(
    ctx: &mut Ctx,
    key: &KeyPath,
    name: &str,
    v: &RawVol,
    regions: &[Region],
) -> Volume {
    let region_ok = ctx.check_region(&key.key("region"), &v.region);
    if v.source.as_os_str().is_empty() {
        ctx.error(
            &key.key("source"),
            "source is empty",
            Some("name the directory to replicate, e.g. \"/srv/app-data\"".into()),
        );
    }

    // The repository lives in the paired region: that is what survives the loss of this one.
    let pair = pair_of(regions, &v.region);
    let repo_region = match (&v.repository_region, pair) {
        (Some(r), _) => {
            let rk = key.key("repository_region");
            if ctx.check_region(&rk, r) && region_ok {
                if *r == v.region {
                    ctx.error(
                        &rk,
                        format!("the repository is in {r:?}, the same region as the volume"),
                        Some(format!(
                            "put the repository in the paired region{} so it survives the loss of {r:?}",
                            pair.map(|p| format!(" ({p:?})")).unwrap_or_default()
                        )),
                    );
                } else if pair != Some(r.as_str()) {
                    ctx.error(
                        &rk,
                        format!(
                            "region {r:?} is not the pair of {:?}{}",
                            v.region,
                            pair.map(|p| format!(" (its pair is {p:?})"))
                                .unwrap_or_default()
                        ),
                        Some(format!(
                            "use the paired region, or pair the regions: set `pair = \"{r}\"` under [regions.{}]",
                            v.region
                        )),
                    );
                }
            }
            r.clone()
        }
        (None, Some(p)) => p.to_string(),
        (None, None) => {
            if region_ok {
                ctx.error(
                    &key.key("region"),
                    format!(
                        "region {:?} has no pair, so there is no region to replicate to",
                        v.region
                    ),
                    Some(format!(
                        "pair it with another region (`pair = \"...\"` under [regions.{}]) or set repository_region",
                        v.region
                    )),
                );
            }
            String::new()
        }
    };
    let repository = Repository {
        region: repo_region.clone(),
        location: check_location(ctx, &key.key("repository"), &v.repository),
        options: v.repository_options.clone(),
    };

    let password = match (&v.password, &v.password_env, &v.password_file) {
        (Some(s), None, None) => Password::Value(s.clone()),
        (None, Some(e), None) => {
            if e.is_empty() || e.contains('=') || e.contains('\0') {
                ctx.error(
                    &key.key("password_env"),
                    format!("{e:?} is not an environment variable name"),
                    Some("write the variable's name, e.g. \"TANDEM_VOLUME_PASSWORD\"".into()),
                );
            }
            Password::Env(e.clone())
        }
        (None, None, Some(f)) => Password::File(f.clone()),
        (None, None, None) => {
            ctx.error(
                key,
                format!("volume {name:?} has no repository password"),
                Some("set password_env = \"TANDEM_VOLUME_PASSWORD\" (or password_file); the repository is encrypted with it".into()),
            );
            Password::Env(String::new())
        }
        _ => {
            ctx.error(
                key,
                format!(
                    "volume {name:?} sets more than one of password, password_env and password_file"
                ),
                Some("keep exactly one of them".into()),
            );
            Password::Env(String::new())
        }
    };

    let interval = v.interval.map_or(DEFAULT_INTERVAL, |d| d.0);
    if interval < Duration::from_millis(100) {
        ctx.error(
            &key.key("interval"),
            "interval is shorter than 100ms",
            Some("snapshots need time to be written; use at least \"1s\"".into()),
        );
    }
    let scan_interval = v
        .scan_interval
        .map_or(Duration::from_secs(600), |d| d.0)
        .max(interval);
    let lag_alert = v.lag_alert.map_or(interval * 4, |d| d.0);
    if lag_alert < interval {
        ctx.error(
            &key.key("lag_alert"),
            format!(
                "lag_alert ({}) is shorter than interval ({}), so it would always fire",
                crate::value::format_duration(lag_alert),
                crate::value::format_duration(interval)
            ),
            Some("set it to a few intervals, e.g. 4 × interval".into()),
        );
    }
    let bandwidth = v.bandwidth.as_ref().and_then(|b| match parse_bandwidth(b) {
        Ok(n) => Some(n),
        Err(e) => {
            ctx.error(
                &key.key("bandwidth"),
                e,
                Some("write a rate like \"50MiB/s\", \"100Mbit/s\" or \"2MB/s\"".into()),
            );
            None
        }
    });
    let concurrency = v.concurrency.unwrap_or(4);
    if !(1..=64).contains(&concurrency) {
        ctx.error(
            &key.key("concurrency"),
            format!("concurrency {concurrency} is outside 1..=64"),
            Some("4 keeps a long link busy; raise it for high-latency object storage".into()),
        );
    }
    let compression = v.compression.unwrap_or(3);
    if !(-7..=22).contains(&compression) {
        ctx.error(
            &key.key("compression"),
            format!("compression level {compression} is outside -7..=22 (zstd)"),
            Some("3 is a good default; 0 turns compression off".into()),
        );
    }
    for (i, pat) in v.exclude.iter().enumerate() {
        if pat.trim().is_empty() {
            ctx.error(
                &key.key("exclude").index(i),
                "empty exclude pattern",
                Some("remove it, or write a glob like \"*.tmp\"".into()),
            );
        }
    }
    let mut hook = |k: &str, h: &Option<Vec<String>>| -> Option<Vec<String>> {
        let h = h.as_ref()?;
        if h.is_empty() || h[0].is_empty() {
            ctx.error(
                &key.key(k),
                "the hook has no command",
                Some("write the command and its arguments as a list, e.g. [\"/usr/local/bin/app\", \"freeze\"]".into()),
            );
            return None;
        }
        Some(h.clone())
    };
    let hooks = Hooks {
        pre: hook("pre_hook", &v.pre_hook),
        post: hook("post_hook", &v.post_hook),
        timeout: v.hook_timeout.map_or(Duration::from_secs(60), |d| d.0),
    };

    let retention = v.retention.as_ref().map(|r| {
        let ret = Retention {
            keep_last: r.keep_last.unwrap_or(0),
            keep_hourly: r.keep_hourly.unwrap_or(0),
            keep_daily: r.keep_daily.unwrap_or(0),
            keep_weekly: r.keep_weekly.unwrap_or(0),
            prune_interval: r.prune_interval.map_or(Duration::from_secs(3600), |d| d.0),
        };
        if ret.keep_last + ret.keep_hourly + ret.keep_daily + ret.keep_weekly == 0 {
            ctx.error(
                &key.key("retention"),
                "the retention policy keeps nothing",
                Some("set at least keep_last (e.g. keep_last = 10); without a [retention] table every snapshot is kept".into()),
            );
        }
        ret
    });

    let standby = v.standby.as_ref().map(|s| {
        let sk = key.key("standby");
        let region = s.region.clone().unwrap_or_else(|| repo_region.clone());
        if s.region.is_some() {
            ctx.check_region(&sk.key("region"), &region);
        }
        if region == v.region && !region.is_empty() {
            ctx.error(
                &sk.key("region"),
                format!("the standby is in {region:?}, the same region as the volume"),
                Some("a standby belongs in the paired region, next to the repository".into()),
            );
        }
        if s.dir.as_os_str().is_empty() {
            ctx.error(
                &sk.key("dir"),
                "standby dir is empty",
                Some("name the directory the standby keeps restored".into()),
            );
        }
        Standby {
            region,
            dir: s.dir.clone(),
            poll_interval: s.poll_interval.map_or(Duration::from_secs(2), |d| d.0),
        }
    });

    let reverse = v.reverse.as_ref().map(|r| {
        let rk = key.key("reverse");
        let region = r.region.clone().unwrap_or_else(|| v.region.clone());
        if r.region.is_some() && ctx.check_region(&rk.key("region"), &region) && region != v.region
        {
            ctx.error(
                &rk.key("region"),
                format!(
                    "the reverse repository is in {region:?}, but it must be in the volume's own region {:?}",
                    v.region
                ),
                Some("after a failover the data flows back to the original region".into()),
            );
        }
        Repository {
            region,
            location: check_location(ctx, &rk.key("repository"), &r.repository),
            options: r.repository_options.clone(),
        }
    });

    Volume {
        name: name.to_string(),
        region: v.region.clone(),
        source: v.source.clone(),
        repository,
        password,
        interval,
        scan_interval,
        lag_alert,
        bandwidth,
        concurrency,
        compression,
        exclude: v.exclude.clone(),
        hooks,
        retention,
        standby,
        reverse,
    }
}

/// The URL schemes a repository may use.
pub const REPOSITORY_SCHEMES: &[&str] = &[
    "file", "s3", "s3a", "az", "azure", "abfs", "abfss", "adl", "gs", "memory",
];

fn check_location(ctx: &mut Ctx, key: &KeyPath, loc: &str) -> String {
    if loc.trim().is_empty() {
        ctx.error(
            key,
            "repository is empty",
            Some("write a directory (\"/srv/westus/repo\") or an object-store URL (\"s3://bucket/prefix\")".into()),
        );
    } else if let Some((scheme, _)) = loc.split_once("://")
        && !REPOSITORY_SCHEMES.contains(&scheme)
    {
        ctx.error(
            key,
            format!("repository scheme {scheme:?} is not supported"),
            Some(format!(
                "use a directory path or one of: {}",
                REPOSITORY_SCHEMES
                    .iter()
                    .map(|s| format!("{s}://"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        );
    }
    loc.to_string()
}

/// Parse a transfer rate like `50MiB/s`, `100Mbit/s`, `2MB/s` or `1048576` (bytes per second).
pub fn parse_bandwidth(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t).trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a transfer rate"))?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "Kbit" | "kbit" => 1e3 / 8.0,
        "Mbit" => 1e6 / 8.0,
        "Gbit" => 1e9 / 8.0,
        u => return Err(format!("{s:?} has an unknown unit {u:?}")),
    };
    let v = n * mult;
    if !v.is_finite() || v < 1024.0 {
        return Err(format!(
            "{s:?} is below 1KiB/s; a link that slow cannot replicate anything"
        ));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_units() {
        assert_eq!(parse_bandwidth("1MiB/s"), Ok(1024 * 1024));
        assert_eq!(parse_bandwidth("8Mbit/s"), Ok(1_000_000));
        assert_eq!(parse_bandwidth("2 MB"), Ok(2_000_000));
        assert_eq!(parse_bandwidth("4096"), Ok(4096));
        assert!(parse_bandwidth("fast").is_err());
        assert!(parse_bandwidth("10").is_err());
        assert!(parse_bandwidth("3 parsecs/s").is_err());
    }
}
