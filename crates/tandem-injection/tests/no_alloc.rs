//! The detectors run on every argument of every request: they must not touch the heap.
//! `allocation_counter` (its allocator is this test binary's) counts the allocations of the
//! calling thread only: the test harness's own threads allocate meanwhile (a process-wide
//! count once failed this test with 4 allocations that were not the detectors').

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
    let mut hits = 0usize;
    let info = allocation_counter::measure(|| {
        for input in &inputs {
            hits += usize::from(tandem_injection::detect_sqli(input).is_some());
            hits += usize::from(tandem_injection::detect_xss(input));
        }
    });
    assert!(hits > 0);
    assert_eq!(info.count_total, 0, "{info:?}");
}

/// The counter itself sees an allocation on this thread (so the zero above is not vacuous).
#[test]
fn the_counter_counts() {
    let info = allocation_counter::measure(|| drop(std::hint::black_box(vec![1u8; 100])));
    assert_eq!(info.count_total, 1, "{info:?}");
}
