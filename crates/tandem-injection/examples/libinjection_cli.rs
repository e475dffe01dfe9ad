//! Differential-testing driver: reads hex-encoded inputs, one per line, and prints
//! `<sqli 0|1> <fingerprint|-> <xss 0|1>` per line, the same format as the C driver that
//! `gen/oracle.sh` builds from libinjection, so the two outputs can be diffed.
//!
//! `cargo run --release -p tandem-injection --example libinjection_cli < inputs.hex`

use std::io::{BufRead, BufWriter, Write};

fn unhex(line: &str) -> Vec<u8> {
    let b = line.as_bytes();
    let val = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
    b.chunks_exact(2)
        .map(|p| val(p[0]) * 16 + val(p[1]))
        .collect()
}

fn main() -> std::io::Result<()> {
    let stdin = std::io::stdin();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let input = unhex(line?.trim_end());
        let sqli = tandem_injection::detect_sqli(&input);
        let xss = tandem_injection::detect_xss(&input);
        match sqli {
            Some(fp) => writeln!(out, "1 {} {}", fp, u8::from(xss))?,
            None => writeln!(out, "0 - {}", u8::from(xss))?,
        }
    }
    Ok(())
}
