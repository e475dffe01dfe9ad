//! The `tandem` binary as a user runs it: config checking, the DNS server with SIGHUP
//! reloads and SIGTERM, and the lab with a region failed and restored.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tandem");

/// A port free for both UDP and TCP on `ip` right now.
fn free_port(ip: &str) -> u16 {
    for _ in 0..50 {
        let u = UdpSocket::bind(format!("{ip}:0")).unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(format!("{ip}:{port}")).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// A minimal DNS A query and the addresses in its answer (enough for these tests; the DNS
/// crate's own tests use a full client).
fn query_a(server: SocketAddr, name: &str) -> Option<Vec<String>> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s.send_to(&q, server).unwrap();
    let mut buf = [0u8; 1500];
    let n = s.recv(&mut buf).ok()?;
    let r = &buf[..n];
    let an = u16::from_be_bytes([r[6], r[7]]) as usize;
    let mut i = q.len();
    let mut out = Vec::new();
    for _ in 0..an {
        i += 2; // compressed owner
        let t = u16::from_be_bytes([r[i], r[i + 1]]);
        let len = u16::from_be_bytes([r[i + 8], r[i + 9]]) as usize;
        if t == 1 && len == 4 {
            out.push(format!(
                "{}.{}.{}.{}",
                r[i + 10],
                r[i + 11],
                r[i + 12],
                r[i + 13]
            ));
        }
        i += 10 + len;
    }
    Some(out)
}

/// A child process whose stderr is collected.
struct Proc {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Proc {
    fn start(args: &[&str], dir: &Path) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        Proc { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn check_accepts_the_examples_and_reports_every_problem() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(BIN)
        .args(["check", "-c", "examples/lab.toml"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (2 regions"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[regions.a]\npair = \"b\"\n\n[regions.b]\n\n[monitors.m]\ninterval = 5\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:7:12") && err.contains("monitors.m.interval"),
        "{err}"
    );

    std::fs::write(&bad, "[regions.a]\npair = \"b\"\n\n[regions.b]\n").unwrap();
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:2:1")
            && err.contains("does not name \"a\" back")
            && err.contains("hint:"),
        "{err}"
    );

    let out = Command::new(BIN)
        .args(["check", "-c", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.toml"));
}

#[test]
fn dns_reloads_on_sighup_refuses_bad_config_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tandem.toml");
    let port = free_port("127.0.0.1");
    let admin = free_port("127.0.0.1");
    let base = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\n[dns]\nlisten = [\"127.0.0.1:{port}\"]\n[dns.zones.\"example.test\"]\nns = [\"ns1.example.test\"]\n[dns.zones.\"example.test\".records]\nwww = {{ a = [\"192.0.2.1\"] }}\n"
    );
    std::fs::write(&cfg, &base).unwrap();
    let mut p = Proc::start(
        &["dns", "-c", cfg.to_str().unwrap(), "--log-format", "json"],
        dir.path(),
    );
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || query_a(
            server,
            "www.example.test"
        ) == Some(vec![
            "192.0.2.1".into()
        ]))
        .is_some(),
        "{}",
        p.log()
    );

    // A good change is picked up on SIGHUP.
    std::fs::write(&cfg, base.replace("192.0.2.1", "192.0.2.2")).unwrap();
    p.signal("-HUP");
    assert!(
        wait_for(Duration::from_secs(5), || query_a(
            server,
            "www.example.test"
        ) == Some(vec![
            "192.0.2.2".into()
        ]))
        .is_some(),
        "{}",
        p.log()
    );

    // A broken file is refused with its error logged, and the old config keeps serving.
    std::fs::write(
        &cfg,
        base.replace("records]", "records]\nbroken = { a = [\"not-an-ip\"] }"),
    )
    .unwrap();
    p.signal("-HUP");
    assert!(
        wait_for(Duration::from_secs(5), || p
            .log()
            .contains("reload refused"))
        .is_some(),
        "{}",
        p.log()
    );
    assert!(p.log().contains("not-an-ip"), "{}", p.log());
    assert_eq!(
        query_a(server, "www.example.test"),
        Some(vec!["192.0.2.2".into()])
    );
    // Logs are JSON lines with the flag.
    assert!(
        p.log()
            .lines()
            .any(|l| l.starts_with('{') && l.contains("\"level\"")),
        "{}",
        p.log()
    );

    p.signal("-TERM");
    let status = p
        .wait_exit(Duration::from_secs(5))
        .expect("exits within 5s of SIGTERM");
    assert!(status.success(), "{}", p.log());
}

#[test]
fn lab_fails_a_region_and_dns_moves_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lab = std::fs::read_to_string(root.join("examples/lab.toml")).unwrap();
    // Same lab, on ports no other test or running lab uses.
    let dns_port = free_port("127.0.0.1");
    let admin_port = free_port("127.0.0.1");
    let app_port = free_port("127.0.1.10");
    let cfg = lab
        .replace("127.0.0.1:5353", &format!("127.0.0.1:{dns_port}"))
        .replace("127.0.0.1:9090", &format!("127.0.0.1:{admin_port}"))
        .replace(":8000", &format!(":{app_port}"))
        .replace("port = 8000", &format!("port = {app_port}"));
    let path = dir.path().join("lab.toml");
    std::fs::write(&path, cfg).unwrap();
    let p = Proc::start(&["up", "-c", path.to_str().unwrap()], dir.path());
    let dns: SocketAddr = format!("127.0.0.1:{dns_port}").parse().unwrap();
    assert!(
        wait_for(Duration::from_secs(15), || p.log().contains("Try:")).is_some(),
        "{}",
        p.log()
    );
    assert!(
        p.log().contains(&format!("127.0.1.10:{app_port}")),
        "the banner lists every address:\n{}",
        p.log()
    );
    assert!(
        wait_for(Duration::from_secs(5), || query_a(dns, "app.tandem.test")
            == Some(vec!["127.0.1.10".into()]))
        .is_some()
    );
    let admin = format!("127.0.0.1:{admin_port}");
    let lab_cmd = |verb: &str| {
        let out = Command::new(BIN)
            .args(["lab", verb, "eastus", "--admin", &admin])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let started = Instant::now();
    assert!(lab_cmd("fail").contains("eastus: failed"));
    let took = wait_for(Duration::from_secs(5), || {
        query_a(dns, "app.tandem.test") == Some(vec!["127.0.2.10".into()])
    })
    .expect("DNS moves to westus");
    let failover = started.elapsed();
    assert!(
        failover < Duration::from_secs(2),
        "failover took {failover:?} ({took:?} after the command returned)"
    );
    // The app really is down, and status shows it.
    assert!(std::net::TcpStream::connect(format!("127.0.1.10:{app_port}")).is_err());
    let st = Command::new(BIN)
        .args(["status", "--admin", &admin])
        .output()
        .unwrap();
    let st = String::from_utf8_lossy(&st.stdout);
    assert!(
        st.contains("eastus  failed") && st.contains("degraded"),
        "{st}"
    );
    assert!(lab_cmd("restore").contains("eastus: up"));
    assert!(
        wait_for(Duration::from_secs(5), || query_a(dns, "app.tandem.test")
            == Some(vec!["127.0.1.10".into()]))
        .is_some()
    );
    // Writes without the token are refused.
    let out = Command::new(BIN)
        .args([
            "lab",
            "fail",
            "eastus",
            "--admin",
            &admin,
            "--token",
            "wrong-token",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}
