//! Property tests: the pure parts of the request path (header hygiene, host and cookie
//! parsing, route matching, the rules engine) never panic on arbitrary input, and route
//! matching agrees with a brute-force reading of the precedence rules.
#![allow(missing_docs, clippy::unwrap_used)]

use http::header::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use tandem_config::edge::{Action, Condition, Field, HttpMode, MatchMode, Op, Route, Rule};
use tandem_edge::headers;
use tandem_edge::route::RouteTable;
use tandem_edge::rules::{RuleRequest, RuleSet};

fn header_map(pairs: &[(String, Vec<u8>)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            h.append(k, v);
        }
    }
    h
}

fn names() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("content-length".to_string()),
        Just("transfer-encoding".to_string()),
        Just("connection".to_string()),
        Just("upgrade".to_string()),
        Just("host".to_string()),
        Just("cookie".to_string()),
        Just("x-forwarded-for".to_string()),
        Just("forwarded".to_string()),
        "[a-z-]{1,12}",
    ]
}

proptest! {
    #[test]
    fn header_functions_never_panic(
        pairs in proptest::collection::vec((names(), proptest::collection::vec(any::<u8>(), 0..40)), 0..12),
        path in "/[ -~]{0,30}",
        cookie_name in "[a-z_]{1,8}",
        keep_upgrade in any::<bool>(),
    ) {
        let mut h = header_map(&pairs);
        let _ = headers::check_framing(&h);
        let _ = headers::is_upgrade(&h);
        let uri: http::Uri = "/".parse().unwrap();
        if let Some(host) = headers::request_host(&uri, &h) {
            let mut added = headers::AddedFields::new();
            headers::add_forwarded(
                &mut h,
                &mut added,
                &headers::ClientNode::new("[::1]:9".parse().unwrap()),
                "https",
                &host,
            );
            // What is added replaces the client's own values, once each.
            for (i, (name, _)) in added.iter().enumerate() {
                prop_assert!(!h.contains_key(name));
                prop_assert!(added[i + 1..].iter().all(|(n, _)| n != name));
            }
            prop_assert!(added.iter().any(|(n, v)| n == "x-forwarded-proto" && v == "https"));
        }
        let _ = headers::cookie(&h, &cookie_name);
        let _ = headers::query_param(&path, &cookie_name);
        headers::strip_hop_by_hop(&mut h, keep_upgrade);
        prop_assert!(!h.contains_key("transfer-encoding"));
        prop_assert!(!h.contains_key("keep-alive"));
    }

    #[test]
    fn exact_host_and_longest_path_win(
        seg in "[a-z]{1,6}",
        rest in "[a-z/]{0,10}",
    ) {
        let route = |name: &str, domains: &[&str], paths: &[String]| Route {
            name: name.into(),
            domains: domains.iter().map(|s| s.to_string()).collect(),
            paths: paths.to_vec(),
            methods: vec![],
            group: Some("g".into()),
            http: HttpMode::Serve,
            waf: None,
            hsts: false,
        };
        let routes = vec![
            route("any", &["*"], &["/*".into()]),
            route("wild", &["*.example.com"], &["/*".into()]),
            route("exact-root", &["app.example.com"], &["/*".into()]),
            route("exact-seg", &["app.example.com"], &[format!("/{seg}/*")]),
        ];
        let t = RouteTable::new(&routes);
        let path = format!("/{seg}/{rest}");
        let get = http::Method::GET;
        prop_assert_eq!(t.find("app.example.com", &path, &get), Some(3));
        prop_assert_eq!(t.find("app.example.com", "/", &get), Some(2));
        prop_assert_eq!(t.find("x.example.com", &path, &get), Some(1));
        prop_assert_eq!(t.find("example.org", &path, &get), Some(0));
    }

    #[test]
    fn rules_never_panic(
        path in "/[ -~]{0,30}",
        query in proptest::option::of("[ -~]{0,20}"),
        value in "[ -~]{0,10}",
        to in "/[a-z$0-9]{0,10}",
        location in "[ -~]{0,30}",
    ) {
        let rules = vec![
            Rule {
                name: "r".into(),
                match_mode: MatchMode::Any,
                conditions: vec![
                    Condition { field: Field::Path, name: None, op: Op::Contains, values: vec![value.clone()], cidrs: vec![], negate: false, ignore_case: true },
                    Condition { field: Field::Query, name: Some("a".into()), op: Op::Prefix, values: vec![value.clone()], cidrs: vec![], negate: true, ignore_case: false },
                ],
                actions: vec![
                    Action::Rewrite { pattern: "^/([^/]*)(.*)$".into(), to: to.clone(), keep_query: false },
                    Action::Redirect { status: 302, location: location.clone(), pattern: Some("^/(.*)$".into()) },
                ],
            },
        ];
        let set = RuleSet::compile(&rules, |_| None).unwrap();
        let mut h = HeaderMap::new();
        let mut req = RuleRequest {
            host: "h",
            path: path.clone(),
            query: query.clone(),
            headers: &mut h,
            method: &http::Method::GET,
            client_ip: "127.0.0.1".parse().unwrap(),
            scheme: "http",
        };
        let _ = set.apply(&mut req);
    }
}

/// Feed `raw` to the chunked decoder `split` bytes at a time; the body, whether trailers
/// came, and whether it ended cleanly.
fn decode_chunked(raw: &[u8], split: usize) -> (Vec<u8>, bool, bool) {
    let mut d = tandem_edge::h1::Chunked::default();
    let mut buf = bytes::BytesMut::new();
    let mut input = raw.chunks(split);
    let (mut body, mut trailers) = (Vec::new(), false);
    loop {
        match d.decode(&mut buf) {
            Ok(tandem_edge::h1::Step::Data(b)) => body.extend_from_slice(&b),
            Ok(tandem_edge::h1::Step::Trailers(_)) => trailers = true,
            Ok(tandem_edge::h1::Step::End) => return (body, trailers, true),
            Ok(tandem_edge::h1::Step::NeedMore) => match input.next() {
                Some(c) => buf.extend_from_slice(c),
                None => return (body, trailers, false),
            },
            Err(_) => return (body, trailers, false),
        }
    }
}

proptest! {
    /// Origin bytes of any shape, in any pieces: the response reader never panics and never
    /// hands out more body than it was given.
    #[test]
    fn origin_response_reader_never_panics(
        raw in proptest::collection::vec(any::<u8>(), 0..600),
        head in prop_oneof![
            Just(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()),
            Just(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 204 No\r\n\r\n".to_vec()),
            Just(Vec::new()),
        ],
        split in 1usize..40,
    ) {
        let mut all = head.clone();
        all.extend_from_slice(&raw);
        let mut buf = bytes::BytesMut::new();
        let mut input = all.chunks(split);
        loop {
            match tandem_edge::h1::parse_response(&mut buf, false) {
                Ok(tandem_edge::h1::Parsed::Head(_)) => break,
                Ok(tandem_edge::h1::Parsed::Interim) => continue,
                Ok(tandem_edge::h1::Parsed::Partial) => match input.next() {
                    Some(c) => buf.extend_from_slice(c),
                    None => break,
                },
                Err(_) => break,
            }
        }
        let (body, _, _) = decode_chunked(&raw, split);
        prop_assert!(body.len() <= raw.len());
    }

    /// Chunked encoding and decoding agree for any body, cut into any chunks, read in any
    /// pieces, with or without trailers.
    #[test]
    fn chunked_round_trips(
        pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
        trailer in proptest::option::of("[a-z]{1,8}"),
        split in 1usize..64,
    ) {
        let mut wire = Vec::new();
        for p in &pieces {
            tandem_edge::h1::encode_chunk(&mut wire, p);
        }
        let mut t = HeaderMap::new();
        if let Some(v) = &trailer {
            t.insert("x-trailer", HeaderValue::from_str(v).unwrap());
        }
        tandem_edge::h1::encode_last_chunk(&mut wire, trailer.as_ref().map(|_| &t));
        let (body, got_trailers, ended) = decode_chunked(&wire, split);
        prop_assert!(ended);
        prop_assert_eq!(body, pieces.concat());
        prop_assert_eq!(got_trailers, trailer.is_some());
    }
}

/// A request as a server hands it on: method, target, fields in order.
type Seen = (String, String, Vec<(String, Vec<u8>)>);

/// What hyper's HTTP/1 server makes of `raw`: the request it hands to its service (method,
/// target, fields in order) and its body (`None` if reading it failed), or `None` when it
/// refuses the bytes.
fn hyper_reads(raw: &[u8]) -> Option<(Seen, Option<Vec<u8>>)> {
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioIo;
    use tokio::io::AsyncWriteExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (btx, mut brx) = tokio::sync::mpsc::unbounded_channel();
        let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let fields = req
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                .collect::<Vec<_>>();
            let _ = tx.send((req.method().to_string(), req.uri().to_string(), fields));
            let btx = btx.clone();
            async move {
                if let Ok(b) = req.into_body().collect().await {
                    let _ = btx.send(b.to_bytes().to_vec());
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<
                    bytes::Bytes,
                >::new()))
            }
        });
        // `half_close`: the client's end of input does not cancel the request being read.
        let conn = hyper::server::conn::http1::Builder::new()
            .half_close(true)
            .serve_connection(TokioIo::new(server), svc);
        client.write_all(raw).await.unwrap();
        client.shutdown().await.unwrap();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), conn).await;
        rx.try_recv().ok().map(|seen| (seen, brx.try_recv().ok()))
    })
}

fn pick(xs: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(xs).prop_map(str::to_string)
}

fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    // Weighted towards requests the edge's own server takes, so that most cases compare.
    let method = prop_oneof![
        6 => pick(&["GET", "HEAD", "DELETE", "OPTIONS"]),
        1 => pick(&["POST", "G3T", "CONNECT", ""]),
    ];
    let target = prop_oneof![
        6 => pick(&["/", "/a/b?c=d&e", "http://h.example/x", "*", "/%zz", "/a%20b#f"]),
        1 => pick(&["/\x7f", "h.example:443", " /", "/\u{e9}"]),
        2 => "[!-~]{0,12}",
    ];
    let version = prop_oneof![
        6 => pick(&["HTTP/1.1"]),
        1 => pick(&["HTTP/1.0", "HTTP/2.0", "HTTP/1.1 ", "http/1.1"]),
    ];
    let name = prop_oneof![
        6 => pick(&["Host", "X-A", "connection", "Content-Length", "accept"]),
        1 => pick(&["Transfer-Encoding", "Expect", "Upgrade", "Bad Name", ""]),
        2 => "[!-~]{1,8}",
    ];
    let value = prop_oneof![
        6 => pick(&["0", "5", "close", "keep-alive, close", "upgrade", "chunked", "a\tb", " x ", "\u{e9}", ""]),
        3 => "[ -~]{0,10}",
    ];
    let sep = prop_oneof![6 => Just(": "), 2 => Just(":"), 1 => Just(" : ")];
    let eol = prop_oneof![6 => Just("\r\n"), 1 => Just("\n")];
    let field = (name, sep, value, eol.clone()).prop_map(|(n, s, v, e)| format!("{n}{s}{v}{e}"));
    (
        method,
        target,
        version,
        eol.clone(),
        proptest::collection::vec(field, 0..6),
        eol,
        // What follows the head: a body, part of one, or the next request's first bytes.
        "[ -~]{0,8}",
    )
        .prop_map(|(m, t, v, e, fields, end, after)| {
            format!("{m} {t} {v}{e}{}{end}{after}", fields.concat()).into_bytes()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]
    /// The edge's own HTTP/1 server only takes requests that hyper's server would read the
    /// same way (same method, target, fields and body); everything else is left untouched
    /// for hyper, which serves the connection from there.
    #[test]
    fn own_request_parser_agrees_with_hyper(raw in request_bytes()) {
        let mut buf = bytes::BytesMut::from(&raw[..]);
        match tandem_edge::h1::parse_request(&mut buf, 16 * 1024, 100, 1024) {
            tandem_edge::h1::ParsedRequest::Simple { parts, body, .. } => {
                let ours: Seen = (
                    parts.method.to_string(),
                    parts.uri.to_string(),
                    parts
                        .headers
                        .iter()
                        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                        .collect::<Vec<_>>(),
                );
                prop_assert!(raw.ends_with(&buf), "only the head is taken");
                // The body as the own server reads it: the next `body` bytes, or none when
                // the connection ends before them (hyper's read fails then too).
                let body = usize::try_from(body).unwrap();
                let ours_body = (buf.len() >= body).then(|| buf[..body].to_vec());
                let theirs = hyper_reads(&raw);
                prop_assert_eq!(
                    Some((ours, ours_body)),
                    theirs,
                    "{:?}",
                    String::from_utf8_lossy(&raw)
                );
            }
            tandem_edge::h1::ParsedRequest::Other | tandem_edge::h1::ParsedRequest::Partial => {
                prop_assert_eq!(&buf[..], &raw[..]);
            }
        }
    }
}
