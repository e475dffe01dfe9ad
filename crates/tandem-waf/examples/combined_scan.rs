//! An experiment for the engine shape docs/waf.md sketches ("What that would take"): the
//! paranoia-level-1 `@rx` rules that read request data, grouped by transformation chain, each
//! group compiled into one multi-pattern automaton, and a request's values scanned once per
//! group instead of once per rule. Prints, for the values of a benign GET and of a few
//! attacks, what the per-rule regexes cost against one automaton per group (`is_match`, and
//! `which_overlapping_matches`, which says which rules to run), and the automata's sizes.
//!
//! ```text
//! cargo run --release -p tandem-waf --example combined_scan -- [CRS_DIR] [ROUNDS]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use regex_automata::{Input, MatchKind, PatternSet, meta, util::syntax};
use tandem_waf::operator::OpKind;
use tandem_waf::rule::Rule;

/// The thread's CPU time in nanoseconds.
fn cpu_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    })
}

/// One group: the patterns of the links sharing a transformation chain.
struct Group {
    chain: u16,
    chain_name: String,
    ids: Vec<u32>,
    sources: Vec<String>,
    singles: Vec<regex::bytes::Regex>,
    combined: meta::Regex,
}

fn build_many(pats: &[String]) -> Result<meta::Regex, String> {
    meta::Regex::builder()
        .syntax(
            syntax::Config::new()
                .unicode(false)
                .utf8(false)
                .dot_matches_new_line(true)
                .multi_line(true),
        )
        .configure(
            meta::Config::new()
                .match_kind(MatchKind::All)
                .utf8_empty(false)
                .nfa_size_limit(Some(256 << 20))
                .hybrid_cache_capacity(16 << 20),
        )
        .build_many(pats)
        .map_err(|e| e.to_string())
}

fn single(p: &str) -> regex::bytes::Regex {
    regex::bytes::RegexBuilder::new(p)
        .unicode(false)
        .dot_matches_new_line(true)
        .multi_line(true)
        .size_limit(64 << 20)
        .dfa_size_limit(16 << 20)
        .build()
        .expect("compiles as the engine compiles it")
}

/// Scan each distinct form with the automaton of all patterns; `on_hit` gets each matching
/// pattern whose group's chain yields that form.
fn scan_forms(
    all: &meta::Regex,
    cache: &mut meta::Cache,
    set: &mut PatternSet,
    forms: &[(Vec<u8>, Vec<usize>)],
    group_of: &[usize],
    mut on_hit: impl FnMut(usize),
) {
    for (f, groups) in forms {
        set.clear();
        all.which_overlapping_matches_with(cache, &Input::new(f), set);
        for p in set.iter() {
            if groups.contains(&group_of[p.as_usize()]) {
                on_hit(p.as_usize());
            }
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .map(PathBuf::from)
        .or_else(tandem_waf::ftw::default_crs_dir)
        .expect("CRS dir");
    let rounds: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(2000);
    let rs = tandem_waf::ftw::load_crs(&dir, "SecRuleEngine On\n").expect("CRS loads");

    // Links of PL1 request rules whose operator is a linear @rx over request data.
    let mut by_chain: BTreeMap<u16, Vec<(u32, String)>> = BTreeMap::new();
    let mut other_ops = 0usize;
    for rule in rs.rules() {
        if !(rule.phase == 1 || rule.phase == 2) || !rule.has_tag("paranoia-level/1") {
            continue;
        }
        let mut link: Option<&Rule> = Some(rule);
        while let Some(l) = link {
            let reads_request = l.targets.iter().any(|t| t.var.is_scanned());
            match &l.op.kind {
                OpKind::Rx(p) if reads_request && !l.op.negated && !p.is_backtracking() => {
                    by_chain
                        .entry(l.tchain)
                        .or_default()
                        .push((l.id, tandem_waf::pattern::translate(p.source())));
                }
                _ if reads_request => other_ops += 1,
                _ => {}
            }
            link = l.chained.as_deref();
        }
    }
    let mut groups = Vec::new();
    let t0 = Instant::now();
    for (chain, links) in by_chain {
        let sources: Vec<String> = links.iter().map(|(_, p)| p.clone()).collect();
        let combined = build_many(&sources).expect("combined automaton builds");
        let chain_name = rs
            .trie()
            .path(chain)
            .iter()
            .map(|(_, t)| t.name())
            .collect::<Vec<_>>()
            .join(",");
        groups.push(Group {
            chain,
            chain_name,
            ids: links.iter().map(|(id, _)| *id).collect(),
            singles: sources.iter().map(|p| single(p)).collect(),
            sources,
            combined,
        });
    }
    let all: Vec<String> = groups.iter().flat_map(|g| g.sources.clone()).collect();
    let everything = build_many(&all).expect("one automaton of all builds");
    println!(
        "{} groups, {} @rx links ({} other request-reading links not counted), built in {:?}",
        groups.len(),
        all.len(),
        other_ops,
        t0.elapsed()
    );
    for g in &groups {
        println!(
            "  chain {:>3} [{}]: {} patterns, automaton {} KB",
            g.chain,
            g.chain_name,
            g.ids.len(),
            g.combined.memory_usage() / 1024
        );
    }
    println!(
        "  all in one: {} patterns, automaton {} KB",
        all.len(),
        everything.memory_usage() / 1024
    );

    let benign: Vec<&[u8]> = vec![
        b"/products/list?page=2&sort=price&q=blue+shoes",
        b"2",
        b"price",
        b"blue shoes",
        b"page",
        b"sort",
        b"q",
        b"shop.example.com",
        b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
        b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        b"en-US,en;q=0.9",
        b"gzip, deflate, br",
        b"session=8f14e45fceea167a5a36dedd4bea2543; theme=dark",
        b"8f14e45fceea167a5a36dedd4bea2543",
        b"dark",
        b"session",
        b"theme",
    ];
    let attacks: Vec<&[u8]> = vec![
        b"1' UNION SELECT password FROM users--",
        b"../../../../etc/passwd",
        b"<script>alert(document.cookie)</script>",
        b"; cat /etc/passwd",
    ];
    // Each value through each group's chain, once (what the transformation cache does).
    let transformed = |vals: &[&[u8]]| -> Vec<Vec<Vec<u8>>> {
        groups
            .iter()
            .map(|g| {
                vals.iter()
                    .map(|v| {
                        let mut cur = v.to_vec();
                        for (_, t) in rs.trie().path(g.chain) {
                            let mut out = Vec::new();
                            if t.apply(&cur, &mut out) {
                                cur = out;
                            }
                        }
                        cur
                    })
                    .collect()
            })
            .collect()
    };
    // A browser's varying values: session ids and search terms of their own, 1024 requests.
    let varied_owned: Vec<Vec<u8>> = (0..1024u32)
        .flat_map(|i| {
            [
                format!(
                    "{:08x}{:08x}",
                    i.wrapping_mul(2_654_435_761),
                    i ^ 0x5bd1_e995
                )
                .into_bytes(),
                format!(
                    "blue shoes size {} colour {}",
                    i % 47,
                    ["red", "navy", "olive"][i as usize % 3]
                )
                .into_bytes(),
                format!("/products/{}/reviews?page={}", i * 7 + 3, i % 9).into_bytes(),
            ]
        })
        .collect();
    let varied: Vec<&[u8]> = varied_owned.iter().map(Vec::as_slice).collect();
    for (name, vals) in [
        ("benign GET", &benign),
        ("attacks", &attacks),
        ("varied", &varied),
    ] {
        let tv = transformed(vals);
        // The distinct forms of each value over all chains, and which groups yield each.
        let mut forms: Vec<(Vec<u8>, Vec<usize>)> = Vec::new();
        for vi in 0..vals.len() {
            let mut mine: Vec<(Vec<u8>, Vec<usize>)> = Vec::new();
            for (gi, per_group) in tv.iter().enumerate() {
                let f = &per_group[vi];
                match mine.iter_mut().find(|(x, _)| x == f) {
                    Some((_, gs)) => gs.push(gi),
                    None => mine.push((f.clone(), vec![gi])),
                }
            }
            forms.extend(mine);
        }
        // Pattern index in `everything` -> its group.
        let group_of: Vec<usize> = groups
            .iter()
            .enumerate()
            .flat_map(|(gi, g)| std::iter::repeat_n(gi, g.ids.len()))
            .collect();
        let ids: Vec<u32> = groups.iter().flat_map(|g| g.ids.clone()).collect();
        let mut caches: Vec<meta::Cache> =
            groups.iter().map(|g| g.combined.create_cache()).collect();
        let mut all_cache = everything.create_cache();
        let mut sets: Vec<PatternSet> = groups
            .iter()
            .map(|g| PatternSet::new(g.combined.pattern_len()))
            .collect();
        let mut all_set = PatternSet::new(everything.pattern_len());
        let mut hits = (0usize, 0usize, 0usize, 0usize);
        let mut best = [u64::MAX; 5];
        let mut by_form_hits = 0usize;
        let mut hit_ids: Vec<u32> = Vec::new();
        for _ in 0..7 {
            // Per rule: every pattern over every value of its group.
            let t = cpu_ns();
            for _ in 0..rounds {
                hits.0 = 0;
                for (g, vs) in groups.iter().zip(&tv) {
                    for v in vs {
                        for re in &g.singles {
                            hits.0 += usize::from(re.is_match(std::hint::black_box(v)));
                        }
                    }
                }
            }
            best[0] = best[0].min(cpu_ns() - t);
            // One automaton per group, is_match.
            let t = cpu_ns();
            for _ in 0..rounds {
                hits.1 = 0;
                for ((g, vs), c) in groups.iter().zip(&tv).zip(caches.iter_mut()) {
                    for v in vs {
                        hits.1 += usize::from(g.combined.search_with(c, &Input::new(v)).is_some());
                    }
                }
            }
            best[1] = best[1].min(cpu_ns() - t);
            // One automaton per group, which patterns match.
            let t = cpu_ns();
            for _ in 0..rounds {
                hits.2 = 0;
                for (((g, vs), c), s) in groups
                    .iter()
                    .zip(&tv)
                    .zip(caches.iter_mut())
                    .zip(sets.iter_mut())
                {
                    for v in vs {
                        s.clear();
                        g.combined
                            .which_overlapping_matches_with(c, &Input::new(v), s);
                        hits.2 += s.len();
                    }
                }
            }
            best[2] = best[2].min(cpu_ns() - t);
            // All patterns in one automaton over the untransformed values.
            let t = cpu_ns();
            for _ in 0..rounds {
                hits.3 = 0;
                for v in vals.iter() {
                    all_set.clear();
                    everything.which_overlapping_matches_with(
                        &mut all_cache,
                        &Input::new(v),
                        &mut all_set,
                    );
                    hits.3 += all_set.len();
                }
            }
            best[3] = best[3].min(cpu_ns() - t);
            // All patterns in one automaton, each distinct form of each value scanned once,
            // hits kept for the patterns whose chain yields that form.
            let t = cpu_ns();
            for _ in 0..rounds {
                by_form_hits = 0;
                scan_forms(
                    &everything,
                    &mut all_cache,
                    &mut all_set,
                    &forms,
                    &group_of,
                    |_| by_form_hits += 1,
                );
            }
            best[4] = best[4].min(cpu_ns() - t);
        }
        scan_forms(
            &everything,
            &mut all_cache,
            &mut all_set,
            &forms,
            &group_of,
            |p| hit_ids.push(ids[p]),
        );
        hit_ids.sort_unstable();
        hit_ids.dedup();
        let per = |ns: u64| ns as f64 / f64::from(rounds) / 1000.0;
        println!("{name} ({} values):", vals.len());
        let rows = [
            (
                "per-rule regexes, every value",
                format!("{} matches", hits.0),
            ),
            (
                "one automaton per chain, is_match",
                format!("{} values hit", hits.1),
            ),
            (
                "one automaton per chain, which",
                format!("{} (value, pattern) hits", hits.2),
            ),
            (
                "one automaton of all, which (raw)",
                format!("{} hits", hits.3),
            ),
            (
                "one automaton of all, distinct forms",
                format!("{} forms, {by_form_hits} hits", forms.len()),
            ),
        ];
        for ((label, what), ns) in rows.iter().zip(best) {
            println!("  {label:<38} {:>9.2} µs  ({what})", per(ns));
        }
        if hit_ids.len() <= 40 {
            println!("  rules whose pattern matched some form: {hit_ids:?}");
        } else {
            println!("  {} rules' patterns matched some form", hit_ids.len());
        }
        println!(
            "  lazy DFA caches after the runs: {} KB per-chain total, {} KB all-in-one",
            caches.iter().map(|c| c.memory_usage()).sum::<usize>() / 1024,
            all_cache.memory_usage() / 1024
        );
    }
}
