//! The detectors run on every argument of every request: they must not touch the heap.
//! This test binary counts every allocation made while they run.

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn detection_does_not_allocate() {
    let inputs: Vec<Vec<u8>> = vec![
        b"1' OR '1'='1".to_vec(),
        b"-1 UNION ALL SELECT username, password FROM users--".to_vec(),
        b"foo')waitfor delay'5:0:20'--".to_vec(),
        b"$tag$ body $tag$ /* c */ @@`version` q'[x]' N'y' x'41' 0x1f 1.e".to_vec(),
        b"<script>alert(1)</script>".to_vec(),
        b"<a href=\"&#106;avascript:alert(1)\" onmouseover=x style=y>".to_vec(),
        b"<!DOCTYPE html><!-- c --><![CDATA[x]]><% y %><?xml ?>".to_vec(),
        b"plain benign text, it's fine -- really".to_vec(),
        (0u8..=255).cycle().take(64 * 1024).collect(),
    ];
    let region = Region::new(GLOBAL);
    let mut hits = 0usize;
    for input in &inputs {
        hits += usize::from(tandem_injection::detect_sqli(input).is_some());
        hits += usize::from(tandem_injection::detect_xss(input));
    }
    let stats = region.change();
    assert!(hits > 0);
    assert_eq!(stats.allocations, 0, "{stats:?}");
    assert_eq!(stats.reallocations, 0, "{stats:?}");
}
