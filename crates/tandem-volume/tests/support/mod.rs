//! Shared helpers: a config for one volume, a tree of real files, and comparison of trees.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_config::volume::VolumeConfig;
use tandem_volume::spec::{Direction, VolumeSpec};

pub const PASSWORD: &str = "correct horse battery staple";

pub fn config(root: &Path, extra: &str) -> VolumeConfig {
    let src = format!(
        r#"
[regions.eastus]
pair = "westus"
[regions.westus]
pair = "eastus"

[volume]
state_dir = "{root}/state"

[volume.volumes.data]
region = "eastus"
source = "{root}/eastus/data"
repository = "{root}/westus/repo"
password = "{PASSWORD}"
interval = "1s"
scan_interval = "30s"
lag_alert = "5s"
{extra}

[volume.volumes.data.standby]
dir = "{root}/westus/data"
poll_interval = "200ms"

[volume.volumes.data.reverse]
repository = "{root}/eastus/repo"
"#,
        root = root.display()
    );
    let cfg = tandem_config::parse(&src, "test.toml").expect("valid config");
    std::fs::create_dir_all(root.join("eastus/data")).expect("mkdir");
    cfg.volume.expect("volume section")
}

pub fn spec(cfg: &VolumeConfig) -> VolumeSpec {
    VolumeSpec::new(cfg, &cfg.volumes[0], Direction::Forward).expect("spec")
}

/// A tree exercising what a volume holds: nested dirs, an empty dir, a symlink, odd
/// permissions, a sparse file, a larger file and many small ones.
pub fn populate(dir: &Path) {
    std::fs::create_dir_all(dir.join("a/b/c")).expect("mkdir");
    std::fs::create_dir_all(dir.join("empty")).expect("mkdir");
    std::fs::write(dir.join("hello.txt"), b"hello eastus\n").expect("write");
    std::fs::write(dir.join("a/b/c/deep.txt"), b"deep").expect("write");
    std::fs::write(dir.join("zero"), b"").expect("write");
    for i in 0..50 {
        std::fs::write(
            dir.join(format!("a/small-{i}")),
            format!("file {i}\n").repeat(i + 1),
        )
        .expect("write");
    }
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("a/big.bin"), &big).expect("write");
    let f = std::fs::File::create(dir.join("sparse.img")).expect("create");
    f.set_len(64 * 1024 * 1024).expect("sparse");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = f;
        f.seek(SeekFrom::Start(32 * 1024 * 1024)).expect("seek");
        f.write_all(b"middle of nowhere").expect("write");
    }
    std::os::unix::fs::symlink("hello.txt", dir.join("link")).expect("symlink");
    std::os::unix::fs::symlink("/nonexistent/target", dir.join("dangling")).expect("symlink");
    std::fs::write(dir.join("secret"), b"0600").expect("write");
    std::fs::set_permissions(dir.join("secret"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    std::fs::write(dir.join("tool.sh"), b"#!/bin/sh\necho hi\n").expect("write");
    std::fs::set_permissions(dir.join("tool.sh"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
}

/// What a tree holds: for each relative path, its kind, mode, size, mtime and content hash.
/// Tests poll this while an agent is still writing the tree (temporary files appear and are
/// renamed away), so an entry that vanishes between the directory listing and its reading is
/// left out: the snapshot then simply does not match yet. Any other error panics.
pub fn manifest(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// `Some(value)`, `None` when the path vanished, a panic on any other error.
fn present<T>(r: std::io::Result<T>, what: &str) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let Some(listing) = present(std::fs::read_dir(dir), "read_dir") else {
        return;
    };
    let mut entries: Vec<PathBuf> = listing
        .filter_map(|e| present(e, "entry"))
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        let rel = p.strip_prefix(root).expect("prefix").display().to_string();
        let Some(m) = present(std::fs::symlink_metadata(&p), "lstat") else {
            continue;
        };
        let mode = m.mode() & 0o7777;
        let desc = if m.file_type().is_symlink() {
            let Some(target) = present(std::fs::read_link(&p), "readlink") else {
                continue;
            };
            format!("link -> {}", target.display())
        } else if m.is_dir() {
            walk(root, &p, out);
            format!("dir {mode:o}")
        } else {
            let Some(data) = present(std::fs::read(&p), "read") else {
                continue;
            };
            format!(
                "file {mode:o} {} mtime={} sum={:016x}",
                data.len(),
                m.mtime(),
                fnv(&data)
            )
        };
        out.insert(rel, desc);
    }
}

pub fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Whether Debian's restic is installed; when it is not, tests that need it skip, unless
/// `TANDEM_CI=1`, where they fail.
pub fn restic() -> Option<PathBuf> {
    let found = std::process::Command::new("restic")
        .arg("version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| PathBuf::from("restic"));
    if found.is_none() {
        assert!(
            std::env::var("TANDEM_CI").as_deref() != Ok("1"),
            "restic is not installed (apt-get install restic) and TANDEM_CI=1"
        );
        eprintln!("SKIP: restic is not installed (apt-get install restic)");
    }
    found
}

pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
