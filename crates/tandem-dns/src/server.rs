//! The server: sockets, workers, health, reload and shutdown.
//!
//! UDP is served by dedicated threads, one `SO_REUSEPORT` socket each, so the kernel spreads
//! queries over cores and no query waits on an async wake-up; TCP by a tokio task per
//! connection (mini-redis style), bounded by a semaphore. Both read the current [`Routing`]
//! snapshot through `arc-swap`: a health change or a reload swaps in a new snapshot and the
//! next query sees it, without a lock and without dropping anything in flight.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::registry::Registry;
use socket2::{Domain, Protocol, Socket, Type};
use tandem_config::Config;
use tandem_config::dns::DnsConfig;
use tandem_geo::Geo;
use tandem_probe::{Cell, ProbeMetrics, Prober, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalog::Catalog;
use crate::handler::{self, Action, HandlerCounters};
use crate::metrics::DnsMetrics;
use crate::route::Routing;

/// Why the DNS server could not start or reload.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The config has no `[dns]` section.
    #[error(
        "the config has no [dns] section; add one with `listen`, `zones` and `profiles` (see docs/config.md)"
    )]
    NoDnsSection,
    /// A listen address could not be bound.
    #[error(
        "cannot listen on {addr} ({proto}): {source}; is another DNS server running there? Use a free address in [dns] listen or --listen"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// `udp` or `tcp`.
        proto: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The geography could not be loaded.
    #[error(transparent)]
    Geo(#[from] tandem_geo::GeoError),
    /// A monitor could not be set up.
    #[error(transparent)]
    Probe(#[from] tandem_probe::ProbeError),
}

/// Bound sockets, ready to serve. Binding is separate from running so that tests (and the
/// lab) bind port 0 and learn the address before queries start.
#[derive(Debug)]
pub struct Listeners {
    udp: Vec<(SocketAddr, Vec<UdpSocket>)>,
    tcp: Vec<TcpListener>,
}

impl Listeners {
    /// Bind UDP (`workers` sockets per address, sharing the port) and TCP on every address.
    /// With port 0, UDP and TCP end up on the same port.
    pub async fn bind(addrs: &[SocketAddr], workers: usize) -> Result<Listeners, DnsError> {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            workers
        };
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        for &addr in addrs {
            let mut last_err = None;
            let mut bound = None;
            for _ in 0..20 {
                match bind_pair(addr, workers).await {
                    Ok(pair) => {
                        bound = Some(pair);
                        break;
                    }
                    // Port 0 picked a UDP port whose TCP twin is taken: try another.
                    Err(e) if addr.port() == 0 => last_err = Some(e),
                    Err(e) => return Err(e),
                }
            }
            match bound {
                Some((local, socks, listener)) => {
                    udp.push((local, socks));
                    tcp.push(listener);
                }
                None => return Err(last_err.unwrap_or(DnsError::NoDnsSection)),
            }
        }
        Ok(Listeners { udp, tcp })
    }

    /// The bound addresses (UDP and TCP share them).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp.iter().map(|(a, _)| *a).collect()
    }
}

async fn bind_pair(
    addr: SocketAddr,
    workers: usize,
) -> Result<(SocketAddr, Vec<UdpSocket>, TcpListener), DnsError> {
    let first = udp_socket(addr).map_err(|source| DnsError::Bind {
        addr,
        proto: "udp",
        source,
    })?;
    let local = first.local_addr().map_err(|source| DnsError::Bind {
        addr,
        proto: "udp",
        source,
    })?;
    let mut socks = vec![first];
    for _ in 1..workers {
        socks.push(udp_socket(local).map_err(|source| DnsError::Bind {
            addr: local,
            proto: "udp",
            source,
        })?);
    }
    let tcp = tcp_listener(local).map_err(|source| DnsError::Bind {
        addr: local,
        proto: "tcp",
        source,
    })?;
    Ok((local, socks, tcp))
}

fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // Best effort: a larger buffer absorbs bursts; the kernel caps it at rmem_max.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    let s: UdpSocket = s.into();
    // Workers wake up this often to notice shutdown.
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(s)
}

fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

/// Probe cells aligned with the catalog: `cells[profile][endpoint]`.
type Cells = Vec<Vec<Option<Arc<Cell>>>>;

pub(crate) struct Inner {
    pub(crate) routing: ArcSwap<Routing>,
    pub(crate) cells: Mutex<Arc<Cells>>,
    /// Endpoints an operator disabled through the admin API: (profile, endpoint) → disabled.
    pub(crate) overrides: Mutex<HashMap<(String, String), bool>>,
    counters: HandlerCounters,
    pub(crate) metrics: DnsMetrics,
    prober: Prober,
    listen: Mutex<Vec<SocketAddr>>,
    tcp_idle: Mutex<Duration>,
    max_tcp: usize,
    pub(crate) shares: Mutex<crate::admin::Shares>,
    rebuild: Mutex<()>,
    reloading: Mutex<()>,
}

/// The DNS traffic manager.
#[derive(Clone)]
pub struct DnsServer {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer").finish_non_exhaustive()
    }
}

impl DnsServer {
    /// Build the server from config: compile zones and profiles, start probes. Metrics are
    /// registered in `registry`; probes stop when `shutdown` is cancelled.
    pub fn new(
        cfg: &Config,
        registry: &mut Registry,
        shutdown: CancellationToken,
    ) -> Result<DnsServer, DnsError> {
        let dns = cfg.dns.as_ref().ok_or(DnsError::NoDnsSection)?;
        let metrics = DnsMetrics::register(registry);
        let probe_metrics = ProbeMetrics::register(registry);
        let prober = Prober::new(shutdown, probe_metrics);
        let (catalog, cells) = compile(cfg, dns, &metrics, &prober, &mut HashMap::new())?;
        let routing = Routing::build(catalog.clone(), &|p, e| up(&cells, p, e), &|_, _| false);
        let counters = HandlerCounters {
            malformed_dropped: metrics.dropped("malformed"),
            truncated: metrics.truncated.clone(),
        };
        let inner = Arc::new(Inner {
            routing: ArcSwap::from_pointee(routing),
            cells: Mutex::new(Arc::new(cells)),
            overrides: Mutex::new(HashMap::new()),
            counters,
            metrics,
            prober,
            listen: Mutex::new(dns.listen.clone()),
            tcp_idle: Mutex::new(dns.tcp_idle_timeout),
            max_tcp: dns.max_tcp_connections,
            shares: Mutex::new(crate::admin::Shares::default()),
            rebuild: Mutex::new(()),
            reloading: Mutex::new(()),
        });
        Ok(DnsServer { inner })
    }

    /// Serve on `listeners` until `shutdown` is cancelled; returns when every worker and
    /// connection has finished the query it was answering.
    pub async fn run(&self, listeners: Listeners, shutdown: CancellationToken) -> io::Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (addr, socks) in listeners.udp {
            for (i, sock) in socks.into_iter().enumerate() {
                let inner = self.inner.clone();
                let stop = stop.clone();
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("dns-udp-{i}"))
                        .spawn(move || udp_worker(&inner, &sock, &stop))?,
                );
            }
            tracing::info!(%addr, "DNS listening (udp, tcp)");
        }
        let tracker = TaskTracker::new();
        let sem = Arc::new(Semaphore::new(self.inner.max_tcp));
        for l in listeners.tcp {
            tracker.spawn(tcp_accept(
                self.inner.clone(),
                l,
                sem.clone(),
                shutdown.clone(),
                tracker.clone(),
            ));
        }
        let inner = self.inner.clone();
        let mut changes = inner.prober.subscribe();
        let watch_token = shutdown.clone();
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    _ = watch_token.cancelled() => return,
                    r = changes.changed() => if r.is_err() { return },
                }
                inner.rebuild_routing();
            }
        });
        shutdown.cancelled().await;
        stop.store(true, Ordering::Relaxed);
        tracker.close();
        tracker.wait().await;
        for t in threads {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        self.inner.prober.closed().await;
        tracing::info!("DNS stopped");
        Ok(())
    }

    /// Swap in a new config. Probes whose target did not change keep their state; listen
    /// addresses cannot change without a restart (a warning says so). On error nothing
    /// changes and the old config keeps serving.
    pub fn reload(&self, cfg: &Config) -> Result<(), DnsError> {
        let dns = cfg.dns.as_ref().ok_or(DnsError::NoDnsSection)?;
        let inner = &self.inner;
        let _one_at_a_time = inner.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let old_cells = inner
            .cells
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let old_catalog = inner.routing.load().catalog.clone();
        let mut reuse = HashMap::new();
        for (pi, prof) in old_catalog.profiles.iter().enumerate() {
            for (ei, ep) in prof.endpoints.iter().enumerate() {
                if let Some(Some(c)) = old_cells.get(pi).and_then(|row| row.get(ei)) {
                    reuse.insert((prof.name.clone(), ep.name.clone()), c.clone());
                }
            }
        }
        let (catalog, cells) = match compile(cfg, dns, &inner.metrics, &inner.prober, &mut reuse) {
            Ok(x) => x,
            Err(e) => {
                inner.metrics.reload(false);
                return Err(e);
            }
        };
        for c in reuse.values() {
            c.stop();
        }
        if *inner.listen.lock().unwrap_or_else(|p| p.into_inner()) != dns.listen {
            tracing::warn!("dns.listen changed; the new addresses take effect after a restart");
        }
        *inner.tcp_idle.lock().unwrap_or_else(|p| p.into_inner()) = dns.tcp_idle_timeout;
        inner.rebuild_routing_with(Some((catalog, cells)));
        inner.metrics.reload(true);
        tracing::info!(
            profiles = dns.profiles.len(),
            zones = dns.zones.len(),
            "DNS config reloaded"
        );
        Ok(())
    }

    /// Answer one query packet as if it came from `src` over UDP (or TCP). For fuzzing and
    /// in-process tests; returns the response bytes, or `None` when the packet is dropped.
    pub fn answer_packet(&self, pkt: &[u8], src: IpAddr, tcp: bool) -> Option<Vec<u8>> {
        let mut buf = Vec::with_capacity(512);
        let r = self.inner.routing.load();
        match handler::answer(&r, &self.inner.counters, pkt, src, tcp, &mut buf) {
            Action::Respond => Some(buf),
            Action::Drop => None,
        }
    }
}

fn up(cells: &Cells, p: usize, e: usize) -> bool {
    cells
        .get(p)
        .and_then(|v| v.get(e))
        .and_then(|c| c.as_ref())
        .is_none_or(|c| c.state().is_healthy())
}

/// Compile config into a catalog and probe cells. Cells in `reuse` (keyed by profile and
/// endpoint name) whose target is unchanged are taken over and removed from the map; what
/// is left there afterwards is no longer needed. On error, cells started here are stopped.
fn compile(
    cfg: &Config,
    dns: &DnsConfig,
    metrics: &DnsMetrics,
    prober: &Prober,
    reuse: &mut HashMap<(String, String), Arc<Cell>>,
) -> Result<(Arc<Catalog>, Cells), DnsError> {
    let regions: Vec<String> = cfg.regions.iter().map(|r| r.name.clone()).collect();
    let geo = Arc::new(Geo::new(&cfg.geo, &regions)?);
    let catalog = Arc::new(Catalog::build(dns, &cfg.regions, geo, metrics));
    let mut cells = Cells::new();
    let mut started: Vec<Arc<Cell>> = Vec::new();
    for p in &dns.profiles {
        let mut row = Vec::new();
        for e in &p.endpoints {
            let Some(t) = &e.probe else {
                row.push(None);
                continue;
            };
            let key = (p.name.clone(), e.name.clone());
            if reuse.get(&key).is_some_and(|c| c.target().probe == *t) {
                row.push(reuse.remove(&key));
                continue;
            }
            let target = Target {
                service: "dns",
                id: format!("{}/{}", p.name, e.name),
                probe: t.clone(),
                passive_threshold: None,
            };
            match prober.add(target) {
                Ok(c) => {
                    started.push(c.clone());
                    row.push(Some(c));
                }
                Err(err) => {
                    for c in &started {
                        c.stop();
                    }
                    return Err(err.into());
                }
            }
        }
        cells.push(row);
    }
    Ok((catalog, cells))
}

impl Inner {
    pub(crate) fn rebuild_routing(&self) {
        self.rebuild_routing_with(None);
    }

    /// Build and publish a routing snapshot. Serialised, so a health-triggered rebuild can
    /// never publish an older catalog over a reload's newer one.
    fn rebuild_routing_with(&self, new: Option<(Arc<Catalog>, Cells)>) {
        let _serial = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        let catalog = match new {
            Some((catalog, cells)) => {
                *self.cells.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(cells);
                catalog
            }
            None => self.routing.load().catalog.clone(),
        };
        let cells = self.cells.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let overrides = self
            .overrides
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let cat = catalog.clone();
        let disabled = |p: usize, e: usize| {
            let prof = &cat.profiles[p];
            overrides
                .get(&(prof.name.clone(), prof.endpoints[e].name.clone()))
                .copied()
                .unwrap_or(false)
        };
        let routing = Routing::build(catalog, &|p, e| up(&cells, p, e), &disabled);
        self.routing.store(Arc::new(routing));
    }
}

/// Datagrams received (and answered) per system call at most.
const BATCH: usize = 32;
/// Largest query accepted over UDP; EDNS clients rarely send more than 512 bytes.
const MAX_QUERY: usize = 4096;

/// One UDP worker: `recvmmsg` a batch, answer each query, `sendmmsg` the answers. Batching
/// matters more than anything in user space: on loopback most of a query's cost is system
/// calls and wake-ups (measured: under 15% of the time is spent outside the kernel).
fn udp_worker(inner: &Inner, sock: &UdpSocket, stop: &AtomicBool) {
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};

    let fd = sock.as_raw_fd();
    let mut bufs = vec![[0u8; MAX_QUERY]; BATCH];
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1500)).collect();
    let mut rx = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut meta: Vec<(usize, Option<SockaddrStorage>)> = Vec::with_capacity(BATCH);
    while !stop.load(Ordering::Relaxed) {
        meta.clear();
        {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
                bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
            match recvmmsg(fd, &mut rx, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None) {
                Ok(msgs) => meta.extend(msgs.map(|m| (m.bytes, m.address))),
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "udp receive failed");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
        }
        let routing = inner.routing.load();
        let mut n = 0;
        let mut dests: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
        for (i, (len, addr)) in meta.iter().enumerate() {
            let Some(src) = addr.as_ref().and_then(to_std) else {
                continue;
            };
            let len = (*len).min(MAX_QUERY);
            let (done, rest) = outs.split_at_mut(n);
            let _ = done;
            if handler::answer(
                &routing,
                &inner.counters,
                &bufs[i][..len],
                src.ip(),
                false,
                &mut rest[0],
            ) == Action::Respond
            {
                dests[n] = *addr;
                n += 1;
            }
        }
        drop(routing);
        send_batch(sock, &outs[..n], &dests[..n]);
    }
}

/// Send answers with `sendmmsg` (rustix's safe wrapper; nix's cannot report how many were
/// sent without reading memory it never initialised). A destination that fails is skipped so
/// it cannot cost the rest of the batch.
fn send_batch(
    sock: &UdpSocket,
    outs: &[Vec<u8>],
    dests: &[Option<nix::sys::socket::SockaddrStorage>],
) {
    use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny, sendmmsg};
    use std::io::IoSlice;

    let addrs: Vec<Option<SocketAddrAny>> = dests
        .iter()
        .map(|d| d.as_ref().and_then(to_std).map(SocketAddrAny::from))
        .collect();
    let iovs: Vec<[IoSlice<'_>; 1]> = outs.iter().map(|o| [IoSlice::new(o)]).collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = (0..outs.len())
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut msgs: Vec<MMsgHdr<'_>> = Vec::with_capacity(outs.len());
    for ((addr, iov), control) in addrs.iter().zip(&iovs).zip(controls.iter_mut()) {
        if let Some(addr) = addr {
            msgs.push(MMsgHdr::new_with_addr(addr, iov, control));
        }
    }
    let mut sent = 0;
    while sent < msgs.len() {
        match sendmmsg(sock, &mut msgs[sent..], SendFlags::empty()) {
            Ok(0) => break,
            Ok(k) => sent += k,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                tracing::debug!(error = %e, "udp send failed");
                sent += 1;
            }
        }
    }
}

fn to_std(a: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        Some(SocketAddr::V4((*v4).into()))
    } else {
        a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
    }
}

async fn tcp_accept(
    inner: Arc<Inner>,
    l: TcpListener,
    sem: Arc<Semaphore>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = l.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let inner = inner.clone();
        let token = shutdown.clone();
        tracker.spawn(async move {
            inner.metrics.tcp_connections.inc();
            let idle = *inner.tcp_idle.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = tcp_conn(&inner, stream, peer, idle, token).await {
                tracing::debug!(%peer, error = %e, "tcp connection ended");
            }
            inner.metrics.tcp_connections.dec();
            drop(permit);
        });
    }
}

/// One TCP connection: length-prefixed queries, answered in order, until idle or shutdown.
async fn tcp_conn(
    inner: &Inner,
    mut s: TcpStream,
    peer: SocketAddr,
    idle: Duration,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let _ = s.set_nodelay(true);
    let mut pkt = vec![0u8; 65535];
    let mut out = Vec::with_capacity(4096);
    loop {
        let len = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = tokio::time::timeout(idle, s.read_u16()) => match r {
                Err(_) => return Ok(()),
                Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(r) => r? as usize,
            },
        };
        // The rest of a message must follow promptly: a slow sender cannot hold a slot.
        tokio::time::timeout(idle, s.read_exact(&mut pkt[..len]))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "message body too slow"))??;
        let action = {
            let r = inner.routing.load();
            handler::answer(&r, &inner.counters, &pkt[..len], peer.ip(), true, &mut out)
        };
        if action == Action::Respond {
            let mut framed = Vec::with_capacity(out.len() + 2);
            framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
            framed.extend_from_slice(&out);
            tokio::time::timeout(idle, s.write_all(&framed))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client not reading"))??;
        } else {
            // A packet we would drop over UDP ends a TCP session.
            return Ok(());
        }
    }
}
