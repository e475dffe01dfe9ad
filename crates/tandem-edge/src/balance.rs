//! Origin groups at run time: health cells, the Front Door selection algorithm, passive
//! health, the retry budget and affinity tokens.
//!
//! Selection (Front Door's order):
//! 1. Drop disabled origins, origins already tried by this request, and unhealthy ones (active
//!    probe down, or ejected by passive health). If the group has no healthy enabled origin at
//!    all, `when_all_unhealthy` decides: `try_all` selects among every enabled origin as if
//!    healthy, `fail` answers 503.
//! 2. Keep the best priority tier (lowest number; with `local_first`, origins in the edge's own
//!    region form a tier ahead of all others).
//! 3. Keep origins whose measured latency is within `latency_sensitivity` of the fastest one
//!    (origins without a measurement yet are kept).
//! 4. Weighted round-robin among what is left.
//!
//! Everything here is read on every request: health and counters are atomics, the group
//! itself is immutable and replaced whole on reload (health cells carry over).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::HeaderValue;
use http::uri::{Authority, Scheme};
use smallvec::SmallVec;
use tandem_config::edge::{AllUnhealthy, Origin, OriginGroup};

/// Milliseconds since the edge started; the clock of ejections, budgets and deadlines.
///
/// Read a few times per request, so it reads the kernel's coarse monotonic clock (the time
/// of the last tick, 1–4 ms old; a plain read with no counter access) rather than
/// `Instant::now()`: the deadlines it serves are whole seconds or hundreds of milliseconds.
/// A task woken by a timer armed with [`Clock::at`] may read a time up to a tick before the
/// one it armed for: it takes the armed time as the lower bound (see `watch::Watched`).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    /// The coarse clock at `start`, in ms.
    coarse_start: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            start: Instant::now(),
            coarse_start: coarse_ms(),
        }
    }
}

/// The coarse monotonic clock in ms (0 if it cannot be read, which Linux never does).
fn coarse_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE).map_or(0, |t| {
        t.tv_sec() as u64 * 1000 + t.tv_nsec() as u64 / 1_000_000
    })
}

impl Clock {
    /// Now, in ms since start.
    pub fn now_ms(&self) -> u64 {
        coarse_ms().saturating_sub(self.coarse_start)
    }

    /// The instant `ms` milliseconds after start.
    pub fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }
}

/// The health of one origin, shared by the prober, passive health, selection and status; it
/// survives config reloads as long as the group, origin name and address stay the same.
#[derive(Debug)]
pub struct Health {
    /// The active probe (from `tandem-probe`) when the group has a monitor.
    pub probe: arc_swap::ArcSwapOption<tandem_probe::Cell>,
    /// Probe verdict used when there is no probe cell.
    pub probe_up: AtomicBool,
    /// Latency (µs) used when there is no probe cell.
    pub latency_us: AtomicU64,
    /// Consecutive failures seen on real traffic.
    pub consecutive_failures: AtomicU32,
    /// Ejected by passive health until this time (ms since start); 0 = not ejected.
    pub ejected_until_ms: AtomicU64,
    /// Requests sent.
    pub requests: AtomicU64,
    /// Failed attempts.
    pub failures: AtomicU64,
    /// Attempts in flight.
    pub in_flight: AtomicI64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            probe: arc_swap::ArcSwapOption::empty(),
            probe_up: AtomicBool::new(true),
            latency_us: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
        }
    }
}

impl Health {
    /// Healthy for selection at `now_ms`.
    pub fn healthy(&self, now_ms: u64) -> bool {
        self.view(now_ms).0
    }

    /// Whether passive health has the origin ejected at `now_ms`.
    pub fn ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now_ms
    }
}

impl Health {
    /// The active probe's verdict: the probe cell's state when the group has a monitor, else
    /// the static value (always up unless a test sets it).
    pub fn probe_up(&self) -> bool {
        match self.probe.load().as_ref() {
            Some(c) => c.state().is_healthy(),
            None => self.probe_up.load(Ordering::Relaxed),
        }
    }

    /// Mean probe latency in microseconds; 0 = not measured.
    pub fn latency_us(&self) -> u64 {
        match self.probe.load().as_ref() {
            Some(c) => c
                .health_ref()
                .latency
                .map_or(0, |d| (d.as_micros() as u64).max(1)),
            None => self.latency_us.load(Ordering::Relaxed),
        }
    }

    /// Healthy for selection at `now_ms` and the mean probe latency (µs, 0 = not measured),
    /// from one read of the probe's state.
    pub fn view(&self, now_ms: u64) -> (bool, u64) {
        let (up, latency) = match self.probe.load().as_ref() {
            Some(c) => {
                let h = c.health_ref();
                (
                    h.state.is_healthy(),
                    h.latency.map_or(0, |d| (d.as_micros() as u64).max(1)),
                )
            }
            None => (
                self.probe_up.load(Ordering::Relaxed),
                self.latency_us.load(Ordering::Relaxed),
            ),
        };
        (up && !self.ejected(now_ms), latency)
    }

    /// The last failed probe's detail, if the last probe failed.
    pub fn last_probe_error(&self) -> Option<String> {
        let cell = self.probe.load_full()?;
        let h = cell.health();
        h.last.as_ref().filter(|o| !o.ok).map(|o| o.detail.clone())
    }
}

/// Health cells by `(group, origin, address)`, kept across reloads.
pub type HealthMap = HashMap<(String, String, String), Arc<Health>>;

/// An origin ready to receive requests.
#[derive(Debug)]
pub struct OriginRt {
    /// As configured.
    pub cfg: Origin,
    /// Selection tier: lower is preferred.
    pub tier: u16,
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host:port` to connect to.
    pub authority: Authority,
    /// Host header to send, if overridden.
    pub host_header: Option<HeaderValue>,
    /// The affinity cookie value that names this origin (not its address).
    pub token: String,
    /// Shared health.
    pub health: Arc<Health>,
    /// Idle connections to this origin's address (shared by the origins with the same
    /// address and kept across reloads).
    pub pool: Arc<crate::client::OriginPool>,
}

/// Passive health and retry budget settings, and the origins.
#[derive(Debug)]
pub struct GroupRt {
    /// As configured (without origins, which live in `origins`).
    pub name: String,
    /// Origins in config order.
    pub origins: Vec<OriginRt>,
    /// Latency sensitivity in microseconds.
    pub sensitivity_us: u64,
    /// All-unhealthy behaviour.
    pub when_all_unhealthy: AllUnhealthy,
    /// Retries after the first attempt.
    pub retries: u32,
    /// Passive: failures that eject (0 = off).
    pub passive_failures: u32,
    /// Passive: how long.
    pub passive_eject_for: Duration,
    /// Affinity cookie name and attributes.
    pub affinity: Option<AffinityRt>,
    /// The retry budget.
    pub budget: Arc<RetryBudget>,
    rr: AtomicU64,
}

/// Affinity as used at run time.
#[derive(Debug)]
pub struct AffinityRt {
    /// Cookie name.
    pub cookie: String,
    /// Cookie lifetime.
    pub ttl: Option<Duration>,
}

/// One origin as [`GroupRt::select`] sees it: whether it is still in the running, and its
/// probe latency.
#[derive(Debug, Clone, Copy)]
struct View {
    up: bool,
    enabled: bool,
    latency: u64,
}

/// Why no origin could be picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoOrigin {
    /// Every origin is unhealthy and the group says `fail`.
    AllUnhealthy,
    /// Every eligible origin was already tried.
    Exhausted,
}

/// A stable, opaque token for an origin: FNV-1a of group and origin name, in hex.
pub fn origin_token(group: &str, origin: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in group.bytes().chain([0u8]).chain(origin.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl GroupRt {
    /// Build from config; `local_region` is the edge's region, `health` keeps cells alive
    /// across reloads.
    pub fn new(
        g: &OriginGroup,
        local_region: Option<&str>,
        health: &mut HealthMap,
        budget: Arc<RetryBudget>,
    ) -> GroupRt {
        let origins = g
            .origins
            .iter()
            .filter_map(|o| {
                let authority: Authority = o.address.parse().ok()?;
                let tier = if g.local_first {
                    let local = o.region.is_some() && o.region.as_deref() == local_region;
                    if local {
                        o.priority as u16
                    } else {
                        o.priority as u16 + 10
                    }
                } else {
                    o.priority as u16
                };
                let cell = health
                    .entry((g.name.clone(), o.name.clone(), o.address.clone()))
                    .or_default()
                    .clone();
                Some(OriginRt {
                    cfg: o.clone(),
                    tier,
                    scheme: if o.tls { Scheme::HTTPS } else { Scheme::HTTP },
                    authority,
                    host_header: o
                        .host_header
                        .as_deref()
                        .and_then(|h| HeaderValue::from_str(h).ok()),
                    token: origin_token(&g.name, &o.name),
                    health: cell,
                    pool: Arc::new(crate::client::OriginPool::new(crate::client::target(
                        &o.address, o.tls,
                    ))),
                })
            })
            .collect();
        GroupRt {
            name: g.name.clone(),
            origins,
            sensitivity_us: g.latency_sensitivity.as_micros() as u64,
            when_all_unhealthy: g.when_all_unhealthy,
            retries: g.retries,
            passive_failures: g.passive_failures,
            passive_eject_for: g.passive_eject_for,
            affinity: g.affinity.as_ref().map(|a| AffinityRt {
                cookie: a.cookie.clone(),
                ttl: a.ttl,
            }),
            budget,
            rr: AtomicU64::new(0),
        }
    }

    /// Whether any enabled origin is healthy.
    pub fn any_healthy(&self, now_ms: u64) -> bool {
        self.origins
            .iter()
            .any(|o| o.cfg.enabled && o.health.healthy(now_ms))
    }

    /// The origin named by an affinity token, if it is enabled, healthy and not yet tried.
    pub fn by_token(&self, token: &str, tried: &[usize], now_ms: u64) -> Option<usize> {
        self.origins
            .iter()
            .position(|o| o.token == token)
            .filter(|&i| {
                let o = &self.origins[i];
                o.cfg.enabled && o.health.healthy(now_ms) && !tried.contains(&i)
            })
    }

    /// Pick an origin (Front Door's algorithm, see the module docs), skipping `tried`.
    pub fn select(&self, tried: &[usize], now_ms: u64) -> Result<usize, NoOrigin> {
        // Each origin's health is read once (one probe-cell load, one health load), not once
        // per step below: with probes on, a read is two `ArcSwap` loads.
        let mut views: SmallVec<[View; 8]> = self
            .origins
            .iter()
            .map(|o| {
                let (up, latency) = o.health.view(now_ms);
                View {
                    up: o.cfg.enabled && up,
                    enabled: o.cfg.enabled,
                    latency,
                }
            })
            .collect();
        let ignore_health = !views.iter().any(|v| v.up);
        if ignore_health && self.when_all_unhealthy == AllUnhealthy::Fail {
            return Err(NoOrigin::AllUnhealthy);
        }
        // 1. enabled, not tried, healthy (unless none is)
        for (i, v) in views.iter_mut().enumerate() {
            v.up = v.enabled && !tried.contains(&i) && (ignore_health || v.up);
        }
        // 2. best tier
        let best_tier = self
            .origins
            .iter()
            .zip(&views)
            .filter(|(_, v)| v.up)
            .map(|(o, _)| o.tier)
            .min()
            .ok_or(NoOrigin::Exhausted)?;
        for (o, v) in self.origins.iter().zip(views.iter_mut()) {
            v.up &= o.tier == best_tier;
        }
        // 3. latency
        let fastest = views
            .iter()
            .filter(|v| v.up && v.latency > 0)
            .map(|v| v.latency)
            .min()
            .unwrap_or(u64::MAX);
        let limit = fastest.saturating_add(self.sensitivity_us);
        for v in views.iter_mut() {
            v.up &= v.latency == 0 || v.latency <= limit;
        }
        // 4. weighted round-robin
        let total: u64 = self
            .origins
            .iter()
            .zip(&views)
            .filter(|(_, v)| v.up)
            .map(|(o, _)| o.cfg.weight as u64)
            .sum();
        if total == 0 {
            return Err(NoOrigin::Exhausted);
        }
        let mut n = self.rr.fetch_add(1, Ordering::Relaxed) % total;
        let mut last = None;
        for (i, (o, v)) in self.origins.iter().zip(&views).enumerate() {
            if v.up {
                last = Some(i);
                let w = o.cfg.weight as u64;
                if n < w {
                    return Ok(i);
                }
                n -= w;
            }
        }
        last.ok_or(NoOrigin::Exhausted)
    }

    /// Record the outcome of an attempt for passive health. `failed` means connect error,
    /// timeout, broken connection or a 5xx from the origin.
    pub fn record(&self, origin: usize, failed: bool, now_ms: u64) {
        let Some(o) = self.origins.get(origin) else {
            return;
        };
        if !failed {
            o.health.consecutive_failures.store(0, Ordering::Relaxed);
            return;
        }
        o.health.failures.fetch_add(1, Ordering::Relaxed);
        let n = o
            .health
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if self.passive_failures > 0 && n >= self.passive_failures {
            let until = now_ms + self.passive_eject_for.as_millis() as u64;
            let prev = o.health.ejected_until_ms.swap(until, Ordering::Relaxed);
            if prev <= now_ms {
                tracing::warn!(
                    group = %self.name,
                    origin = %o.cfg.name,
                    failures = n,
                    eject_for_ms = self.passive_eject_for.as_millis() as u64,
                    "origin ejected by passive health"
                );
            }
        }
    }
}

/// A retry budget (linkerd/Envoy style): every request deposits `ratio` of a retry, and
/// `min_per_second` retries are always allowed, so retries cannot multiply load on a group
/// that is failing as a whole. Tokens are counted in thousandths.
#[derive(Debug)]
pub struct RetryBudget {
    tokens: AtomicI64,
    last_refill_ms: AtomicU64,
    deposit: i64,
    per_ms: i64,
    cap: i64,
}

impl RetryBudget {
    /// A full budget.
    pub fn new(ratio: f64, min_per_second: u32) -> Self {
        let cap = (min_per_second.max(10) as i64) * 10 * 1000;
        RetryBudget {
            tokens: AtomicI64::new(cap),
            last_refill_ms: AtomicU64::new(0),
            deposit: (ratio * 1000.0) as i64,
            per_ms: min_per_second as i64,
            cap,
        }
    }

    /// A request passed: deposit its share.
    pub fn deposit(&self) {
        if self.deposit > 0 {
            let v = self.tokens.fetch_add(self.deposit, Ordering::Relaxed) + self.deposit;
            if v > self.cap {
                self.tokens.fetch_min(self.cap, Ordering::Relaxed);
            }
        }
    }

    /// Take one retry, if the budget allows.
    pub fn withdraw(&self, now_ms: u64) -> bool {
        let last = self.last_refill_ms.load(Ordering::Relaxed);
        if now_ms > last
            && self
                .last_refill_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let add = (now_ms - last) as i64 * self.per_ms;
            let v = self.tokens.fetch_add(add, Ordering::Relaxed) + add;
            if v > self.cap {
                self.tokens.fetch_min(self.cap, Ordering::Relaxed);
            }
        }
        let mut cur = self.tokens.load(Ordering::Relaxed);
        loop {
            if cur < 1000 {
                return false;
            }
            match self.tokens.compare_exchange_weak(
                cur,
                cur - 1000,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(v) => cur = v,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_follows_real_time_within_a_tick() {
        // Each reading is bracketed by precise instants, so a descheduled thread widens the
        // bracket instead of failing the test. The coarse clock lags the precise one by at
        // most a tick (1–10 ms by kernel configuration).
        const TICK: Duration = Duration::from_millis(12);
        let clock = Clock::default();
        let read = || {
            let before = Instant::now();
            let ms = clock.now_ms();
            (before, ms, Instant::now())
        };
        let (_, t0, _) = read();
        std::thread::sleep(Duration::from_millis(60));
        let (before, t1, after) = read();
        assert!(
            t1 + TICK.as_millis() as u64 >= t0 + 60,
            "the clock moved {} ms over 60 ms of sleep",
            t1.saturating_sub(t0)
        );
        // `at` maps the clock's milliseconds back to instants of the same timeline.
        let at = clock.at(t1);
        assert!(
            at + TICK >= before && at <= after + TICK,
            "at({t1}) is outside the precise clock's bracket"
        );
    }

    fn group(origins: &[(&str, u8, u32, Option<&str>)], local_first: bool) -> OriginGroup {
        OriginGroup {
            name: "g".into(),
            monitor: None,
            latency_sensitivity: Duration::from_millis(50),
            when_all_unhealthy: AllUnhealthy::TryAll,
            local_first,
            retries: 2,
            retry_ratio: 0.2,
            min_retries_per_second: 10,
            passive_failures: 3,
            passive_eject_for: Duration::from_secs(10),
            affinity: None,
            origins: origins
                .iter()
                .enumerate()
                .map(|(i, (name, prio, weight, region))| Origin {
                    name: name.to_string(),
                    address: format!("127.0.0.1:{}", 8000 + i),
                    host_header: None,
                    tls: false,
                    priority: *prio,
                    weight: *weight,
                    enabled: true,
                    region: region.map(String::from),
                })
                .collect(),
        }
    }

    fn rt(g: &OriginGroup, region: Option<&str>) -> GroupRt {
        GroupRt::new(
            g,
            region,
            &mut HealthMap::new(),
            Arc::new(RetryBudget::new(0.2, 10)),
        )
    }

    fn counts(g: &GroupRt, n: usize) -> Vec<usize> {
        let mut c = vec![0; g.origins.len()];
        for _ in 0..n {
            if let Ok(i) = g.select(&[], 0) {
                c[i] += 1;
            }
        }
        c
    }

    #[test]
    fn priority_then_weight() {
        let g = rt(
            &group(
                &[
                    ("a", 1, 300, None),
                    ("b", 1, 100, None),
                    ("c", 2, 1000, None),
                ],
                false,
            ),
            None,
        );
        assert_eq!(counts(&g, 400), vec![300, 100, 0]);
        g.origins[0].health.probe_up.store(false, Ordering::Relaxed);
        assert_eq!(counts(&g, 100), vec![0, 100, 0]);
        g.origins[1].health.probe_up.store(false, Ordering::Relaxed);
        assert_eq!(counts(&g, 100), vec![0, 0, 100]);
        // Nothing healthy: try_all selects among all, by priority.
        g.origins[2].health.probe_up.store(false, Ordering::Relaxed);
        assert_eq!(counts(&g, 400), vec![300, 100, 0]);
    }

    #[test]
    fn all_unhealthy_fail_and_exhaustion() {
        let mut cfg = group(&[("a", 1, 1, None), ("b", 2, 1, None)], false);
        cfg.when_all_unhealthy = AllUnhealthy::Fail;
        let g = rt(&cfg, None);
        assert_eq!(g.select(&[0], 0), Ok(1));
        assert_eq!(g.select(&[0, 1], 0), Err(NoOrigin::Exhausted));
        for o in &g.origins {
            o.health.probe_up.store(false, Ordering::Relaxed);
        }
        assert_eq!(g.select(&[], 0), Err(NoOrigin::AllUnhealthy));
    }

    #[test]
    fn latency_sensitivity() {
        let g = rt(
            &group(
                &[("a", 1, 1, None), ("b", 1, 1, None), ("c", 1, 1, None)],
                false,
            ),
            None,
        );
        g.origins[0]
            .health
            .latency_us
            .store(10_000, Ordering::Relaxed);
        g.origins[1]
            .health
            .latency_us
            .store(55_000, Ordering::Relaxed);
        g.origins[2]
            .health
            .latency_us
            .store(80_000, Ordering::Relaxed);
        assert_eq!(counts(&g, 100), vec![50, 50, 0]);
    }

    #[test]
    fn local_first_and_passive_ejection() {
        let g = rt(
            &group(
                &[
                    ("east", 1, 1, Some("eastus")),
                    ("west", 1, 1, Some("westus")),
                ],
                true,
            ),
            Some("westus"),
        );
        assert_eq!(counts(&g, 10), vec![0, 10]);
        for _ in 0..3 {
            g.record(1, true, 1000);
        }
        assert!(g.origins[1].health.ejected(1000));
        assert_eq!(g.select(&[], 1000), Ok(0));
        // The ejection ends on its own.
        assert_eq!(g.select(&[], 11_001), Ok(1));
        g.record(1, false, 11_001);
        assert_eq!(
            g.origins[1]
                .health
                .consecutive_failures
                .load(Ordering::Relaxed),
            0
        );
    }

    #[test]
    fn affinity_tokens_are_stable_and_checked() {
        let g = rt(&group(&[("a", 1, 1, None), ("b", 1, 1, None)], false), None);
        let t = origin_token("g", "b");
        assert_eq!(g.by_token(&t, &[], 0), Some(1));
        assert_eq!(g.by_token(&t, &[1], 0), None);
        g.origins[1].health.probe_up.store(false, Ordering::Relaxed);
        assert_eq!(g.by_token(&t, &[], 0), None);
        assert_eq!(g.by_token("nonsense", &[], 0), None);
    }

    #[test]
    fn budget() {
        let b = RetryBudget::new(0.0, 0);
        let mut n = 0;
        while b.withdraw(0) {
            n += 1;
        }
        assert_eq!(n, 100);
        let b = RetryBudget::new(0.5, 0);
        while b.withdraw(0) {}
        b.deposit();
        assert!(!b.withdraw(0));
        b.deposit();
        assert!(b.withdraw(0));
    }
}
