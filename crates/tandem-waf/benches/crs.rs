//! Cost of one request through CRS v4 at paranoia level 1 in prevention mode, in-process:
//! a benign GET, a benign form POST, a benign JSON POST and an SQL-injection attack, each
//! with a browser's headers and a cookie (the mix `bench/waf/run.sh` sends through the edge).
//!
//! ```text
//! cargo bench -p tandem-waf --bench crs                   # thread CPU time (default)
//! TANDEM_BENCH_WALL=1 cargo bench -p tandem-waf --bench crs   # wall-clock time
//! ```
//!
//! The default measurement is the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`),
//! so time the thread spends waiting for a core on a busy machine does not count.

use std::path::PathBuf;
use std::sync::Arc;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput};
use tandem_waf::RuleSet;
use tandem_waf::transaction::{RequestHead, Transaction};

/// The calling thread's CPU time in nanoseconds.
fn thread_cpu_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    })
}

struct ThreadCpu;
struct Nanos;

impl ValueFormatter for Nanos {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (div, unit) = if typical < 1e3 {
            (1.0, "ns")
        } else if typical < 1e6 {
            (1e3, "µs")
        } else {
            (1e6, "ms")
        };
        for v in values {
            *v /= div;
        }
        unit
    }
    fn scale_throughputs(&self, _t: f64, _tp: &Throughput, values: &mut [f64]) -> &'static str {
        for v in values {
            *v = 1e9 / *v;
        }
        "elem/s"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, i: u64) -> u64 {
        thread_cpu_ns().saturating_sub(i)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &Nanos
    }
}

fn head(method: &str, uri: &str, extra: &[(&str, &str)]) -> RequestHead {
    let mut headers = vec![
        ("Host", "shop.example.com"),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
        ),
        (
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("Accept-Language", "en-US,en;q=0.9"),
        ("Accept-Encoding", "gzip, deflate"),
        (
            "Cookie",
            "session=8f14e45fceea167a5a36dedd4bea2543; theme=dark",
        ),
    ];
    headers.extend_from_slice(extra);
    RequestHead {
        method: method.into(),
        uri: uri.as_bytes().to_vec(),
        protocol: "HTTP/1.1".into(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
        client: "203.0.113.7:51000".parse().expect("addr"),
        server: None,
        request_id: "0123456789abcdef0123456789abcdef".into(),
    }
}

/// The four requests: name, head, body, whether CRS must block it.
pub fn cases() -> Vec<(&'static str, RequestHead, Vec<u8>, bool)> {
    vec![
        (
            "get_benign",
            head(
                "GET",
                "/products/list?page=2&sort=price&q=blue+running+shoes",
                &[],
            ),
            Vec::new(),
            false,
        ),
        (
            "post_form",
            head(
                "POST",
                "/checkout",
                &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("Content-Length", "107"),
                ],
            ),
            b"name=Jane+Doe&email=jane%40example.com&address=12+Main+St&city=Springfield&zip=12345&note=leave+at+the+door"
                .to_vec(),
            false,
        ),
        (
            "post_json",
            head(
                "POST",
                "/api/orders",
                &[
                    ("Content-Type", "application/json"),
                    ("Content-Length", "101"),
                ],
            ),
            br#"{"items":[{"sku":"A-100","qty":2},{"sku":"B-7","qty":1}],"coupon":"SPRING","note":"gift wrap please"}"#
                .to_vec(),
            false,
        ),
        (
            "get_attack",
            head(
                "GET",
                "/search?q=1%27%20UNION%20SELECT%20username,password%20FROM%20users--",
                &[],
            ),
            Vec::new(),
            true,
        ),
    ]
}

/// One request through every phase, as the edge runs it; returns whether it was blocked.
pub fn run(rs: &Arc<RuleSet>, h: &RequestHead, body: &[u8]) -> bool {
    let mut tx = Transaction::new(rs.clone(), h);
    tx.set_tx_int("blocking_paranoia_level", 1);
    tx.set_tx_int("detection_paranoia_level", 1);
    tx.process_request_headers();
    if tx.interruption().is_none() {
        tx.process_request_body(body);
    }
    if tx.interruption().is_none() {
        tx.process_response_headers(200, "HTTP/1.1", &[]);
    }
    let blocked = tx.interruption().is_some();
    tx.process_logging();
    blocked
}

fn crs() -> Option<Arc<RuleSet>> {
    let dir: PathBuf = tandem_waf::ftw::default_crs_dir()?;
    Some(Arc::new(
        tandem_waf::ftw::load_crs(&dir, "SecRuleEngine On\n").expect("CRS loads"),
    ))
}

fn bench<M: Measurement>(c: &mut Criterion<M>) {
    let Some(rs) = crs() else {
        eprintln!("skipping: no CRS copy found (set TANDEM_CRS_DIR)");
        return;
    };
    let mut g = c.benchmark_group("crs_pl1");
    for (name, h, body, attack) in cases() {
        assert_eq!(run(&rs, &h, &body), attack, "{name}: wrong verdict");
        g.bench_function(name, |b| b.iter(|| run(&rs, &h, &body)));
    }
    g.finish();
}

fn main() {
    if std::env::var_os("TANDEM_BENCH_WALL").is_some() {
        let mut c = Criterion::<WallTime>::default().configure_from_args();
        bench(&mut c);
        c.final_summary();
    } else {
        let mut c = Criterion::default()
            .with_measurement(ThreadCpu)
            .configure_from_args();
        bench(&mut c);
        c.final_summary();
    }
}
