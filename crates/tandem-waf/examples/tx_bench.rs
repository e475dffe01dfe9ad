//! Time CRS transactions in-process (no HTTP): a benign GET, a benign form POST, a JSON POST
//! and an attack, at paranoia level 1 in prevention mode, in thread CPU time and wall time.
//! `cargo bench -p tandem-waf --bench crs` measures the same with criterion.
//!
//! ```text
//! cargo run --release -p tandem-waf --example tx_bench -- [CRS_DIR] [ITERATIONS]
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tandem_waf::transaction::{RequestHead, Transaction};

fn head(method: &str, uri: &str, extra: &[(&str, &str)]) -> RequestHead {
    head_with(
        method,
        uri,
        "session=8f14e45fceea167a5a36dedd4bea2543; theme=dark",
        extra,
    )
}

fn head_with(method: &str, uri: &str, cookie: &str, extra: &[(&str, &str)]) -> RequestHead {
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
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Cookie", cookie),
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
        request_id: "bench".into(),
    }
}

/// The calling thread's CPU time in nanoseconds (time spent waiting for a core on a busy
/// machine does not count).
fn thread_cpu_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .map(PathBuf::from)
        .or_else(tandem_waf::ftw::default_crs_dir)
        .expect("CRS dir");
    let n: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(14000);
    // TANDEM_WAF_SETUP: SecLang added before CRS, e.g. a phase-1
    // `SecAction "id:1,phase:1,pass,nolog,ctl:ruleRemoveById=920450"` to see what one rule costs.
    let setup = format!(
        "SecRuleEngine On\n{}\n",
        std::env::var("TANDEM_WAF_SETUP").unwrap_or_default()
    );
    let mut rs = tandem_waf::ftw::load_crs(&dir, &setup).expect("CRS loads");
    // TANDEM_WAF_PREFILTER=0 measures the same transactions without the literal prefilter.
    if std::env::var("TANDEM_WAF_PREFILTER").as_deref() == Ok("0") {
        rs.set_literal_prefilter(false);
    }
    // TANDEM_WAF_SCAN_MEMO=0: without the prefilter's per-thread scan memo.
    if std::env::var("TANDEM_WAF_SCAN_MEMO").as_deref() == Ok("0") {
        rs.set_scan_memo(false);
    }
    // TANDEM_WAF_CHAIN_MEMO=0: without the per-thread memo of transformation chains.
    if std::env::var("TANDEM_WAF_CHAIN_MEMO").as_deref() == Ok("0") {
        rs.set_chain_memo(false);
    }
    // TANDEM_WAF_LINK_RESULTS=0: without the per-value link results.
    if std::env::var("TANDEM_WAF_LINK_RESULTS").as_deref() == Ok("0") {
        rs.set_link_results(false);
    }
    // TANDEM_WAF_OP_MEMO=0: without the per-thread operator memo.
    if std::env::var("TANDEM_WAF_OP_MEMO").as_deref() == Ok("0") {
        rs.set_op_memo(false);
    }
    let rs = Arc::new(rs);
    println!(
        "prefilter: {:?} (links, with a prefilter, decided per rule); literals {:?}",
        rs.prefilter_stats(),
        rs.prefilter_literals()
    );
    // The benign GET with a session id and a search term of its own, 1024 variants in turn:
    // what the literal prefilter's per-thread memo (which answers values it saw recently)
    // cannot answer; the headers still repeat, as a browser's do.
    let varied: Vec<RequestHead> = (0..1024u32)
        .map(|i| {
            let cookie = format!(
                "session={:08x}{:08x}; theme=dark",
                i.wrapping_mul(2_654_435_761),
                i ^ 0x5bd1_e995
            );
            let uri = format!("/products/list?page=2&sort=price&q=blue+shoes+{i}");
            head_with("GET", &uri, &cookie, &[])
        })
        .collect();
    let cases: Vec<(&str, Vec<RequestHead>, Vec<u8>)> = vec![
        ("GET benign", vec![head("GET", "/products/list?page=2&sort=price&q=blue+shoes", &[])], Vec::new()),
        ("GET varied", varied, Vec::new()),
        (
            "POST form",
            vec![head("POST", "/checkout", &[("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", "80")])],
            b"name=Jane+Doe&email=jane%40example.com&address=12+Main+St&city=Springfield&zip=12345".to_vec(),
        ),
        (
            "POST json",
            vec![head("POST", "/api/orders", &[("Content-Type", "application/json"), ("Content-Length", "90")])],
            br#"{"items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}],"coupon":"SPRING","note":"leave at door"}"#.to_vec(),
        ),
        ("GET attack", vec![head("GET", "/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--", &[])], Vec::new()),
    ];
    // TANDEM_RESPONSE=1: also the response phases, as the edge runs them.
    let full = std::env::var("TANDEM_RESPONSE").as_deref() == Ok("1");
    let resp_headers: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"Content-Type".to_vec(), b"text/plain".to_vec()),
        (b"Content-Length".to_vec(), b"64".to_vec()),
    ];
    let only = std::env::var("TANDEM_CASE").ok();
    let cases: Vec<_> = cases
        .into_iter()
        .filter(|(name, ..)| only.as_deref().is_none_or(|o| name.contains(o)))
        .collect();
    // Rounds interleave the cases; each case's figure is its best round (the machine is
    // shared: the best round is the one least disturbed by others).
    let rounds = 7u32;
    let per_round = (n / rounds).max(1);
    let mut best = vec![u64::MAX; cases.len()];
    let mut wall = vec![u64::MAX; cases.len()];
    let mut stats = vec![(0u32, 0u32, 0u32, 0u32, 0u32); cases.len()];
    // The same requests one after the other (as an edge serving a mix sees them): each
    // transaction finds less of its working set in the CPU caches than in a loop of one.
    let mut mixed = u64::MAX;
    // TANDEM_EVICT_KB=N: before each transaction, write N KB of other memory, so that the
    // transaction finds less of its working set in the CPU caches (as in the edge, whose own
    // work runs between transactions). The figures are then the transactions' own wall time,
    // clocked one by one, without the writing between them.
    let evict_kb: usize = std::env::var("TANDEM_EVICT_KB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut other = vec![0u8; evict_kb * 1024];
    let mut evict = || {
        for i in (0..other.len()).step_by(64) {
            other[i] = other[i].wrapping_add(1);
        }
        std::hint::black_box(&other);
    };
    if evict_kb > 0 {
        println!(
            "writing {evict_kb} KB of other memory before each transaction (the figures below: \
             the transactions' own wall time)"
        );
    }
    let run = |h: &RequestHead, body: &[u8]| {
        let mut tx = Transaction::new(rs.clone(), h);
        tx.process_request_headers();
        if tx.interruption().is_none() {
            tx.process_request_body(body);
        }
        if tx.interruption().is_none() && full {
            tx.process_response_headers(200, "HTTP/1.1", &resp_headers);
            tx.process_response_body(&[]);
        }
        tx.process_logging();
        tx.rules_evaluated()
    };
    for _ in 0..rounds {
        let cpu = thread_cpu_ns();
        let mut k = 0u32;
        let mut own = 0u64;
        for i in 0..per_round {
            let (_, hs, body) = &cases[i as usize % cases.len()];
            let h = &hs[(i as usize / cases.len()) % hs.len()];
            if evict_kb > 0 {
                evict();
                let t = Instant::now();
                k = k.wrapping_add(run(h, body));
                own += t.elapsed().as_nanos() as u64;
            } else {
                k = k.wrapping_add(run(h, body));
            }
        }
        std::hint::black_box(k);
        let spent = if evict_kb > 0 {
            own
        } else {
            thread_cpu_ns() - cpu
        };
        mixed = mixed.min(spent / u64::from(per_round));
        for (ci, (_, hs, body)) in cases.iter().enumerate() {
            let t = Instant::now();
            let cpu = thread_cpu_ns();
            let mut blocked = 0;
            let mut own = 0u64;
            for i in 0..per_round {
                let h = &hs[i as usize % hs.len()];
                if evict_kb > 0 {
                    evict();
                }
                let t1 = Instant::now();
                let mut tx = Transaction::new(rs.clone(), h);
                tx.process_request_headers();
                if tx.interruption().is_none() {
                    tx.process_request_body(body);
                }
                if tx.interruption().is_some() {
                    blocked += 1;
                } else if full {
                    // The rest of the edge's sequence: the origin's response headers, no
                    // response body inspection.
                    tx.process_response_headers(200, "HTTP/1.1", &resp_headers);
                    tx.process_response_body(&[]);
                }
                tx.process_logging();
                own += t1.elapsed().as_nanos() as u64;
                stats[ci] = (
                    blocked,
                    tx.rules_evaluated(),
                    tx.rules_prefiltered(),
                    tx.rules_decided_by_results(),
                    tx.operator_calls(),
                );
            }
            let (spent, spent_wall) = if evict_kb > 0 {
                (own, own)
            } else {
                (thread_cpu_ns() - cpu, t.elapsed().as_nanos() as u64)
            };
            best[ci] = best[ci].min(spent / u64::from(per_round));
            wall[ci] = wall[ci].min(spent_wall / u64::from(per_round));
        }
    }
    let mean_alone = best.iter().sum::<u64>() as f64 / best.len() as f64 / 1000.0;
    println!(
        "mixed        {:>8.1} µs CPU per request, the cases in turn (their mean alone: {mean_alone:.1} µs)",
        mixed as f64 / 1000.0
    );
    for (ci, (name, ..)) in cases.iter().enumerate() {
        let (blocked, evaluated, skipped, known, ops) = stats[ci];
        println!(
            "{name:<12} {:>8.1} µs CPU ({:>8.1} µs wall) per request  (blocked {}, {evaluated} rules evaluated, {skipped} skipped by the prefilter, {known} by the link results, {ops} operator calls)",
            best[ci] as f64 / 1000.0,
            wall[ci] as f64 / 1000.0,
            blocked > 0,
        );
    }
}
