//! Where a client is.
//!
//! This crate owns the lookup from a client address (or an EDNS Client Subnet) to a country,
//! a continent and a named location: first the `[[geo.networks]]` table from config
//! (longest prefix wins), then a MaxMind-format database if one is configured. The DNS
//! traffic manager uses it for geographic and performance routing, the WAF for geography
//! rules. It also answers the latency question performance routing asks: how far is this
//! location from that region.
//!
//! Lookups take no locks and allocate nothing: the table is one hash map per prefix length,
//! probed from the longest prefix down.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use foldhash::fast::FixedState;
use ipnet::IpNet;
use tandem_config::geo::GeoConfig;

/// A two-letter code (country or continent), upper case.
pub type Code = [u8; 2];

/// Index of a named location (see [`Geo::location_name`]).
pub type LocationId = u16;

/// What is known about where a client is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientLocation {
    /// Country (ISO 3166-1 alpha-2).
    pub country: Option<Code>,
    /// Continent (`NA`, `EU`, ...).
    pub continent: Option<Code>,
    /// Named location from the config.
    pub location: Option<LocationId>,
    /// Prefix length of the network that decided this (the ECS scope to answer with);
    /// 0 when nothing matched.
    pub prefix_len: u8,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    country: Option<Code>,
    continent: Option<Code>,
    location: Option<LocationId>,
}

type PrefixMap = HashMap<u128, Entry, FixedState>;

/// Why the geography could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The MaxMind database could not be opened.
    #[error(
        "cannot open GeoIP database {path}: {source}; check [geo] database points at a GeoLite2/GeoIP2 .mmdb file"
    )]
    Database {
        /// The file.
        path: PathBuf,
        /// The reader's error.
        source: maxminddb::MaxMindDbError,
    },
}

/// The geography, ready for lookups.
pub struct Geo {
    v4: Vec<(u8, PrefixMap)>,
    v6: Vec<(u8, PrefixMap)>,
    names: Vec<String>,
    latency: Vec<Vec<Option<Duration>>>,
    regions: Vec<String>,
    mmdb: Option<maxminddb::Reader<Vec<u8>>>,
}

impl std::fmt::Debug for Geo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Geo")
            .field("locations", &self.names)
            .field("mmdb", &self.mmdb.is_some())
            .finish()
    }
}

fn code(s: &Option<String>) -> Option<Code> {
    let b = s.as_ref()?.as_bytes();
    (b.len() == 2).then(|| [b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()])
}

fn key(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (true, u32::from(a) as u128),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => (true, u32::from(v4) as u128),
            None => (false, u128::from(a)),
        },
    }
}

fn mask(bits: u128, prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        let keep = u128::MAX << (width - prefix);
        bits & (keep
            & if width == 32 {
                u32::MAX as u128
            } else {
                u128::MAX
            })
    }
}

impl Geo {
    /// Build the lookup from config; `regions` fixes the order of region indices in
    /// [`Geo::latency`].
    pub fn new(cfg: &GeoConfig, regions: &[String]) -> Result<Geo, GeoError> {
        let mut names: Vec<String> = Vec::new();
        let mut intern = |n: &str| -> LocationId {
            match names.iter().position(|x| x == n) {
                Some(i) => i as LocationId,
                None => {
                    names.push(n.to_string());
                    (names.len() - 1) as LocationId
                }
            }
        };
        let mut v4: HashMap<u8, PrefixMap> = HashMap::new();
        let mut v6: HashMap<u8, PrefixMap> = HashMap::new();
        for n in &cfg.networks {
            let e = Entry {
                country: code(&n.country),
                continent: code(&n.continent),
                location: n.location.as_deref().map(&mut intern),
            };
            let (table, bits, len) = match n.cidr {
                IpNet::V4(net) => (&mut v4, u32::from(net.network()) as u128, net.prefix_len()),
                IpNet::V6(net) => (&mut v6, u128::from(net.network()), net.prefix_len()),
            };
            // First entry for a network wins, as the file reads top to bottom.
            table
                .entry(len)
                .or_insert_with(|| HashMap::with_hasher(FixedState::default()))
                .entry(bits)
                .or_insert(e);
        }
        for loc in cfg.latency.keys() {
            intern(loc);
        }
        let sorted = |m: HashMap<u8, PrefixMap>| {
            let mut v: Vec<_> = m.into_iter().collect();
            v.sort_by_key(|e| std::cmp::Reverse(e.0));
            v
        };
        let latency = names
            .iter()
            .map(|loc| {
                regions
                    .iter()
                    .map(|r| cfg.latency.get(loc).and_then(|row| row.get(r)).copied())
                    .collect()
            })
            .collect();
        let mmdb = match &cfg.database {
            Some(path) => Some(maxminddb::Reader::open_readfile(path).map_err(|source| {
                GeoError::Database {
                    path: path.clone(),
                    source,
                }
            })?),
            None => None,
        };
        Ok(Geo {
            v4: sorted(v4),
            v6: sorted(v6),
            names,
            latency,
            regions: regions.to_vec(),
            mmdb,
        })
    }

    /// Where `ip` (or the network `ip/source_prefix`, for ECS) is. A table entry only
    /// matches if it is no more specific than what the client disclosed.
    pub fn lookup(&self, ip: IpAddr, source_prefix: u8) -> ClientLocation {
        let (is_v4, bits) = key(ip);
        let (tables, width) = if is_v4 {
            (&self.v4, 32u8)
        } else {
            (&self.v6, 128u8)
        };
        let disclosed = source_prefix.min(width);
        for (len, map) in tables {
            if *len > disclosed {
                continue;
            }
            if let Some(e) = map.get(&mask(bits, *len, width)) {
                return ClientLocation {
                    country: e.country,
                    continent: e.continent,
                    location: e.location,
                    prefix_len: *len,
                };
            }
        }
        if let Some(db) = &self.mmdb
            && let Some(loc) = self.lookup_mmdb(db, ip)
        {
            return ClientLocation {
                prefix_len: loc.prefix_len.min(disclosed),
                ..loc
            };
        }
        ClientLocation::default()
    }

    fn lookup_mmdb(&self, db: &maxminddb::Reader<Vec<u8>>, ip: IpAddr) -> Option<ClientLocation> {
        let r = db.lookup(ip).ok()?;
        if !r.has_data() {
            return None;
        }
        let country: Option<&str> = r
            .decode_path(&maxminddb::path!["country", "iso_code"])
            .ok()
            .flatten();
        let continent: Option<&str> = r
            .decode_path(&maxminddb::path!["continent", "code"])
            .ok()
            .flatten();
        let prefix_len = r.network().map(|n| n.prefix()).unwrap_or(0);
        // IPv4 networks in an IPv6 database come back as IPv4 prefixes already.
        Some(ClientLocation {
            country: code(&country.map(str::to_string)),
            continent: code(&continent.map(str::to_string)),
            location: None,
            prefix_len,
        })
    }

    /// The name of a location id.
    pub fn location_name(&self, id: LocationId) -> &str {
        self.names.get(id as usize).map_or("", String::as_str)
    }

    /// The id of a named location.
    pub fn location_id(&self, name: &str) -> Option<LocationId> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| i as LocationId)
    }

    /// Configured latency from a location to a region (by index in the `regions` given to
    /// [`Geo::new`]).
    pub fn latency(&self, from: LocationId, region: usize) -> Option<Duration> {
        self.latency
            .get(from as usize)?
            .get(region)
            .copied()
            .flatten()
    }

    /// Region names in index order.
    pub fn regions(&self) -> &[String] {
        &self.regions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo() -> Geo {
        let cfg = tandem_config::parse(
            r#"
[regions.east]
pair = "west"
location = "us-east"
[regions.west]
pair = "east"
location = "us-west"
[[geo.networks]]
cidr = "10.0.0.0/8"
country = "US"
continent = "NA"
[[geo.networks]]
cidr = "10.1.0.0/16"
country = "DE"
continent = "EU"
location = "eu-central"
[[geo.networks]]
cidr = "2001:db8::/32"
country = "JP"
continent = "AS"
[geo.latency.eu-central]
east = "90ms"
west = "150ms"
"#,
            "t",
        )
        .expect("valid");
        Geo::new(&cfg.geo, &["east".into(), "west".into()]).expect("geo")
    }

    #[test]
    fn longest_prefix_wins() {
        let g = geo();
        let l = g.lookup("10.1.2.3".parse().expect("ip"), 32);
        assert_eq!(l.country, Some(*b"DE"));
        assert_eq!(l.prefix_len, 16);
        assert_eq!(g.location_name(l.location.expect("loc")), "eu-central");
        let l = g.lookup("10.2.2.3".parse().expect("ip"), 32);
        assert_eq!(
            (l.country, l.continent, l.prefix_len),
            (Some(*b"US"), Some(*b"NA"), 8)
        );
        assert_eq!(
            g.lookup("192.0.2.1".parse().expect("ip"), 32),
            ClientLocation::default()
        );
        assert_eq!(
            g.lookup("2001:db8:1::1".parse().expect("ip"), 128).country,
            Some(*b"JP")
        );
        assert_eq!(
            g.lookup("::ffff:10.1.0.1".parse().expect("ip"), 128)
                .country,
            Some(*b"DE")
        );
    }

    #[test]
    fn ecs_source_prefix_limits_the_match() {
        let g = geo();
        // A client that disclosed only /12 cannot be placed in the /16.
        let l = g.lookup("10.1.0.0".parse().expect("ip"), 12);
        assert_eq!((l.country, l.prefix_len), (Some(*b"US"), 8));
        assert_eq!(
            g.lookup("10.1.0.0".parse().expect("ip"), 4),
            ClientLocation::default()
        );
    }

    #[test]
    fn latency_table() {
        let g = geo();
        let eu = g.location_id("eu-central").expect("id");
        assert_eq!(g.latency(eu, 0), Some(Duration::from_millis(90)));
        assert_eq!(g.latency(eu, 1), Some(Duration::from_millis(150)));
        assert_eq!(g.latency(eu, 2), None);
    }
}
