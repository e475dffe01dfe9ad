//! Geography: where clients are. Client subnets map to a country, a continent and a named
//! location; a latency table says how far each location is from each region. The DNS traffic
//! manager (geographic and performance routing) and the WAF (geography rules) share it.

use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::ctx::{Ctx, entries};
use crate::path::KeyPath;
use crate::value::Dur;

/// Continent codes as used by MaxMind and Traffic Manager.
pub const CONTINENTS: &[&str] = &["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGeo {
    database: Option<PathBuf>,
    #[serde(default)]
    networks: Vec<RawNetwork>,
    #[serde(default)]
    latency: IndexMap<String, IndexMap<String, Dur>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    cidr: String,
    country: Option<String>,
    continent: Option<String>,
    location: Option<String>,
}

/// One row of the client-subnet table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeoNetwork {
    /// The client network.
    pub cidr: IpNet,
    /// ISO 3166-1 alpha-2 country code, upper case.
    pub country: Option<String>,
    /// Continent code (`NA`, `EU`, ...), upper case.
    pub continent: Option<String>,
    /// Named location, a row of the latency table.
    pub location: Option<String>,
}

/// The geography section, as validated.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GeoConfig {
    /// A MaxMind-format (GeoLite2/GeoIP2 Country or City) database, consulted after `networks`.
    pub database: Option<PathBuf>,
    /// Client networks in file order; the longest matching prefix wins.
    pub networks: Vec<GeoNetwork>,
    /// Location name → region name → round-trip latency.
    pub latency: IndexMap<String, IndexMap<String, Duration>>,
}

pub(crate) fn collect_locations(raw: Option<&RawGeo>, out: &mut Vec<String>) {
    if let Some(raw) = raw {
        for n in &raw.networks {
            if let Some(l) = &n.location {
                out.push(l.clone());
            }
        }
        out.extend(raw.latency.keys().cloned());
    }
}

pub(crate) fn validate(ctx: &mut Ctx, raw: Option<&RawGeo>) -> GeoConfig {
    let base = KeyPath::root().key("geo");
    let Some(raw) = raw else {
        return GeoConfig::default();
    };
    let mut networks = Vec::new();
    for (i, n) in raw.networks.iter().enumerate() {
        let key = base.key("networks").index(i);
        let cidr = ctx.parse(
            &key.key("cidr"),
            &n.cidr,
            "CIDR network",
            "\"10.1.0.0/16\" or \"2001:db8::/32\"",
            n.cidr.parse::<IpNet>(),
        );
        let country = n.country.as_ref().map(|c| c.to_ascii_uppercase());
        if let Some(c) = &country
            && (c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            ctx.error(
                &key.key("country"),
                format!("{c:?} is not a two-letter country code"),
                Some("use ISO 3166-1 alpha-2 codes such as \"US\", \"DE\", \"JP\"".into()),
            );
        }
        let continent = n.continent.as_ref().map(|c| c.to_ascii_uppercase());
        if let Some(c) = &continent
            && !CONTINENTS.contains(&c.as_str())
        {
            ctx.error(
                &key.key("continent"),
                format!("{c:?} is not a continent code"),
                Some(format!("use one of {}", CONTINENTS.join(", "))),
            );
        }
        if country.is_none() && continent.is_none() && n.location.is_none() {
            ctx.error(
                &key,
                "a network needs at least one of `country`, `continent` or `location`",
                Some("say where these clients are, e.g. `country = \"US\"`".into()),
            );
        }
        if let Some(cidr) = cidr {
            networks.push(GeoNetwork {
                cidr: cidr.trunc(),
                country,
                continent,
                location: n.location.clone(),
            });
        }
    }
    let mut latency = IndexMap::new();
    for (key, loc, row) in entries(&base.key("latency"), &raw.latency) {
        let mut out_row = IndexMap::new();
        for (rk, region, d) in entries(&key, row) {
            ctx.check_region(&rk, region);
            out_row.insert(region.clone(), d.0);
        }
        latency.insert(loc.clone(), out_row);
    }
    if let Some(db) = &raw.database
        && !db.exists()
    {
        ctx.error(
            &base.key("database"),
            format!("GeoIP database {} does not exist", db.display()),
            Some(
                "give the path of a GeoLite2-Country.mmdb or GeoIP2 database, or remove `database`"
                    .into(),
            ),
        );
    }
    GeoConfig {
        database: raw.database.clone(),
        networks,
        latency,
    }
}
