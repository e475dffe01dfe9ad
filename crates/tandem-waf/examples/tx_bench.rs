//! Time CRS transactions in-process (no HTTP): a benign GET, a benign form POST and an
//! attack, at paranoia level 1 in prevention mode.
//!
//! ```text
//! cargo run --release -p tandem-waf --example tx_bench -- [CRS_DIR] [ITERATIONS]
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tandem_waf::transaction::{RequestHead, Transaction};

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
        ("Accept-Encoding", "gzip, deflate, br"),
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
        request_id: "bench".into(),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .map(PathBuf::from)
        .or_else(tandem_waf::ftw::default_crs_dir)
        .expect("CRS dir");
    let n: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(20000);
    let rs = Arc::new(tandem_waf::ftw::load_crs(&dir, "SecRuleEngine On\n").expect("CRS loads"));
    let cases: Vec<(&str, RequestHead, Vec<u8>)> = vec![
        ("GET benign", head("GET", "/products/list?page=2&sort=price&q=blue+shoes", &[]), Vec::new()),
        (
            "POST form",
            head("POST", "/checkout", &[("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", "80")]),
            b"name=Jane+Doe&email=jane%40example.com&address=12+Main+St&city=Springfield&zip=12345".to_vec(),
        ),
        (
            "POST json",
            head("POST", "/api/orders", &[("Content-Type", "application/json"), ("Content-Length", "90")]),
            br#"{"items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}],"coupon":"SPRING","note":"leave at door"}"#.to_vec(),
        ),
        ("GET attack", head("GET", "/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--", &[]), Vec::new()),
    ];
    for (name, h, body) in &cases {
        let t = Instant::now();
        let mut blocked = 0;
        let mut evaluated = 0;
        let mut ops = 0;
        for _ in 0..n {
            let mut tx = Transaction::new(rs.clone(), h);
            tx.process_request_headers();
            if tx.interruption().is_none() {
                tx.process_request_body(body);
            }
            if tx.interruption().is_some() {
                blocked += 1;
            }
            tx.process_logging();
            evaluated = tx.rules_evaluated();
            ops = tx.operator_calls();
        }
        let per = t.elapsed() / n;
        println!(
            "{name:<12} {per:>10.2?} per request  ({blocked} blocked of {n}, {evaluated} rules, {ops} operator calls)"
        );
    }
}
