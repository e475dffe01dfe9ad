//! Test harness: a real `tandem dns` server on loopback and a real DNS client.

#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use prometheus_client::registry::Registry;
use tandem_dns::{DnsServer, Listeners};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

pub struct Dns {
    pub addr: SocketAddr,
    pub server: DnsServer,
    pub token: CancellationToken,
    pub registry: std::sync::Arc<Registry>,
    task: tokio::task::JoinHandle<()>,
}

impl Dns {
    pub async fn start(toml: &str) -> Dns {
        let cfg = tandem_config::parse(toml, "test.toml").unwrap_or_else(|e| panic!("{e}"));
        let token = CancellationToken::new();
        let mut registry = Registry::default();
        let server = DnsServer::new(&cfg, &mut registry, token.clone()).unwrap();
        let listeners = Listeners::bind(&["127.0.0.1:0".parse().unwrap()], 2)
            .await
            .unwrap();
        let addr = listeners.local_addrs()[0];
        let s = server.clone();
        let t = token.clone();
        let task = tokio::spawn(async move { s.run(listeners, t).await.unwrap() });
        Dns {
            addr,
            server,
            token,
            registry: std::sync::Arc::new(registry),
            task,
        }
    }

    pub async fn reload(&self, toml: &str) {
        let cfg = tandem_config::parse(toml, "test.toml").unwrap_or_else(|e| panic!("{e}"));
        self.server.reload(&cfg).unwrap();
    }

    pub async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("server stops within 5s")
            .unwrap();
    }

    pub fn q(&self, name: &str, t: RecordType) -> Q {
        Q {
            server: self.addr,
            name: name.to_string(),
            t,
            edns: Some(1232),
            ecs: None,
            tcp: false,
            src: None,
        }
    }
}

/// A query being built.
#[derive(Clone)]
pub struct Q {
    server: SocketAddr,
    name: String,
    t: RecordType,
    edns: Option<u16>,
    ecs: Option<(IpAddr, u8)>,
    tcp: bool,
    src: Option<IpAddr>,
}

impl Q {
    pub fn no_edns(mut self) -> Self {
        self.edns = None;
        self
    }
    pub fn payload(mut self, n: u16) -> Self {
        self.edns = Some(n);
        self
    }
    pub fn ecs(mut self, ip: &str, prefix: u8) -> Self {
        self.ecs = Some((ip.parse().unwrap(), prefix));
        self
    }
    pub fn tcp(mut self) -> Self {
        self.tcp = true;
        self
    }
    /// Send from this loopback address (the client's location without ECS).
    pub fn from(mut self, ip: &str) -> Self {
        self.src = Some(ip.parse().unwrap());
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(&self.name).unwrap(), self.t));
        if let Some(p) = self.edns {
            let mut e = Edns::new();
            e.set_max_payload(p);
            if let Some((ip, prefix)) = self.ecs {
                e.options_mut()
                    .insert(EdnsOption::Subnet(ClientSubnet::new(ip, prefix, 0)));
            }
            m.set_edns(e);
        }
        m.to_bytes().unwrap()
    }

    pub async fn send(&self) -> Message {
        let pkt = self.bytes();
        let raw = if self.tcp {
            tcp_raw(self.server, &pkt).await
        } else {
            udp_raw(self.server, &pkt, self.src)
                .await
                .expect("an answer")
        };
        let m = Message::from_bytes(&raw).expect("a well-formed answer");
        assert_eq!(m.metadata.id, u16::from_be_bytes([pkt[0], pkt[1]]));
        assert_eq!(m.metadata.message_type, MessageType::Response);
        m
    }
}

pub async fn udp_raw(server: SocketAddr, pkt: &[u8], src: Option<IpAddr>) -> Option<Vec<u8>> {
    udp_raw_within(server, pkt, src, Duration::from_secs(2)).await
}

pub async fn udp_raw_within(
    server: SocketAddr,
    pkt: &[u8],
    src: Option<IpAddr>,
    limit: Duration,
) -> Option<Vec<u8>> {
    let bind: SocketAddr = SocketAddr::new(src.unwrap_or("127.0.0.1".parse().unwrap()), 0);
    let s = UdpSocket::bind(bind).await.unwrap();
    s.send_to(pkt, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(limit, s.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

pub async fn tcp_raw(server: SocketAddr, pkt: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(server).await.unwrap();
    s.write_u16(pkt.len() as u16).await.unwrap();
    s.write_all(pkt).await.unwrap();
    let n = s.read_u16().await.unwrap() as usize;
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).await.unwrap();
    buf
}

/// The A/AAAA addresses in the answer section, in order.
pub fn addrs(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

pub fn rcode(m: &Message) -> u16 {
    u16::from(m.metadata.response_code)
}

/// The ECS scope the server answered with.
pub fn ecs_scope(m: &Message) -> Option<u8> {
    m.edns
        .as_ref()?
        .options()
        .options
        .iter()
        .find_map(|(_, o)| match o {
            EdnsOption::Subnet(s) => Some(s.scope_prefix()),
            _ => None,
        })
}

/// The header and zone used by most tests.
pub const ZONE: &str = r#"
[regions.eastus]
pair = "westus"
location = "us-east"
[regions.westus]
pair = "eastus"
location = "us-west"

[dns.zones."tandem.test"]
ns = ["ns1.tandem.test", "ns2.tandem.test"]
soa = { rname = "hostmaster.tandem.test", minimum = "7s", serial = 42 }
ttl = "60s"

[dns.zones."tandem.test".records]
ns1 = { a = ["127.0.0.1"] }
ns2 = { a = ["127.0.0.2"], aaaa = ["::2"] }
www = { cname = "static.tandem.test" }
static = { a = ["192.0.2.1", "192.0.2.2"], txt = ["hello world"] }
"mail" = { mx = [{ preference = 10, exchange = "mx.tandem.test" }] }
"a.b.deep" = { a = ["192.0.2.9"] }
"#;
