//! The MaxMind fallback against a real MaxMind DB file, written here by a minimal writer of
//! the published format (MaxMind DB spec 2.0: a binary search tree of 24-bit records, a data
//! section of typed values, and a metadata map after the `\xAB\xCD\xEFMaxMind.com` marker).

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use tandem_geo::Geo;

enum Val<'a> {
    Str(&'a str),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(Vec<(&'a str, Val<'a>)>),
    Arr(Vec<Val<'a>>),
}

fn ctrl(out: &mut Vec<u8>, ty: u8, size: usize) {
    assert!(size < 29);
    if ty <= 7 {
        out.push((ty << 5) | size as u8);
    } else {
        out.push(size as u8);
        out.push(ty - 7);
    }
}

fn uint(out: &mut Vec<u8>, ty: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    ctrl(out, ty, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

fn enc(out: &mut Vec<u8>, v: &Val<'_>) {
    match v {
        Val::Str(s) => {
            ctrl(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Val::U16(n) => uint(out, 5, u64::from(*n)),
        Val::U32(n) => uint(out, 6, u64::from(*n)),
        Val::U64(n) => uint(out, 9, *n),
        Val::Map(kv) => {
            ctrl(out, 7, kv.len());
            for (k, v) in kv {
                enc(out, &Val::Str(k));
                enc(out, v);
            }
        }
        Val::Arr(items) => {
            ctrl(out, 11, items.len());
            for i in items {
                enc(out, i);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Rec {
    Empty,
    Node(u32),
    Data(u32),
}

/// An IPv4 database mapping each network to (country, continent).
fn write_db(nets: &[(Ipv4Addr, u8, &str, &str)]) -> Vec<u8> {
    let mut nodes: Vec<[Rec; 2]> = vec![[Rec::Empty, Rec::Empty]];
    let mut data = Vec::new();
    for (addr, prefix, country, continent) in nets {
        let offset = data.len() as u32;
        enc(
            &mut data,
            &Val::Map(vec![
                ("country", Val::Map(vec![("iso_code", Val::Str(country))])),
                ("continent", Val::Map(vec![("code", Val::Str(continent))])),
            ]),
        );
        let bits = u32::from(*addr);
        let mut node = 0usize;
        for depth in 0..*prefix {
            let bit = ((bits >> (31 - depth)) & 1) as usize;
            if depth + 1 == *prefix {
                nodes[node][bit] = Rec::Data(offset);
            } else {
                node = match nodes[node][bit] {
                    Rec::Node(n) => n as usize,
                    _ => {
                        nodes.push([Rec::Empty, Rec::Empty]);
                        let n = nodes.len() - 1;
                        nodes[node][bit] = Rec::Node(n as u32);
                        n
                    }
                };
            }
        }
    }
    let count = nodes.len() as u32;
    let mut out = Vec::new();
    for n in &nodes {
        for r in n {
            let v = match *r {
                Rec::Empty => count,
                Rec::Node(i) => i,
                Rec::Data(off) => count + 16 + off,
            };
            out.extend_from_slice(&v.to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    enc(
        &mut out,
        &Val::Map(vec![
            ("node_count", Val::U32(count)),
            ("record_size", Val::U16(24)),
            ("ip_version", Val::U16(4)),
            ("database_type", Val::Str("Tandem-Test-Country")),
            ("languages", Val::Arr(vec![Val::Str("en")])),
            ("binary_format_major_version", Val::U16(2)),
            ("binary_format_minor_version", Val::U16(0)),
            ("build_epoch", Val::U64(1_700_000_000)),
            ("description", Val::Map(vec![("en", Val::Str("test"))])),
        ]),
    );
    out
}

#[test]
fn the_database_places_clients_the_table_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("test.mmdb");
    std::fs::write(
        &db,
        write_db(&[
            (Ipv4Addr::new(81, 2, 0, 0), 16, "DE", "EU"),
            (Ipv4Addr::new(133, 0, 0, 0), 8, "JP", "AS"),
        ]),
    )
    .unwrap();
    let cfg = tandem_config::parse(
        &format!(
            "[geo]\ndatabase = \"{}\"\n[[geo.networks]]\ncidr = \"81.2.3.0/24\"\ncountry = \"FR\"\n",
            db.display()
        ),
        "t",
    )
    .unwrap();
    let geo = Geo::new(&cfg.geo, &[]).unwrap();
    // The config table wins where it has an entry...
    let l = geo.lookup("81.2.3.4".parse().unwrap(), 32);
    assert_eq!((l.country, l.prefix_len), (Some(*b"FR"), 24));
    // ...the database answers elsewhere, with its network as the ECS scope.
    let l = geo.lookup("81.2.200.1".parse().unwrap(), 32);
    assert_eq!(
        (l.country, l.continent, l.prefix_len),
        (Some(*b"DE"), Some(*b"EU"), 16)
    );
    let l = geo.lookup("133.9.9.9".parse().unwrap(), 24);
    assert_eq!(
        (l.country, l.continent, l.prefix_len),
        (Some(*b"JP"), Some(*b"AS"), 8)
    );
    // A client that disclosed less than the database's network gets that much scope.
    assert_eq!(geo.lookup("81.2.0.0".parse().unwrap(), 12).prefix_len, 12);
    assert_eq!(geo.lookup("192.0.2.1".parse().unwrap(), 32).country, None);
}

#[test]
fn a_broken_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("junk.mmdb");
    std::fs::write(&db, b"not a database").unwrap();
    let cfg =
        tandem_config::parse(&format!("[geo]\ndatabase = \"{}\"\n", db.display()), "t").unwrap();
    let e = Geo::new(&cfg.geo, &[]).unwrap_err().to_string();
    assert!(e.contains("junk.mmdb") && e.contains("GeoLite2"), "{e}");
}
