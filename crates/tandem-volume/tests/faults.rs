//! Faults: the agent killed with SIGKILL mid-snapshot, a full repository disk, and an
//! unreachable repository. Each leaves a valid repository and a clear error, and the next
//! attempt completes without sending again what already arrived.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_volume::snapshot::{SnapshotFlags, take_snapshot};
use tandem_volume::{AgentOptions, Repo, RestoreRequest, SnapshotSel, Status, run_agent};
use tokio_util::sync::CancellationToken;

use support::*;

/// Incompressible data, fast.
fn random_file(path: &Path, mib: usize, seed: u64) {
    let mut f = std::fs::File::create(path).expect("create");
    let mut x = seed | 1;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        f.write_all(&buf).expect("write");
    }
}

fn pack_count(repo_dir: &Path) -> usize {
    std::fs::read_dir(repo_dir.join("data"))
        .map(|d| {
            d.flatten()
                .map(|e| std::fs::read_dir(e.path()).map_or(0, |f| f.count()))
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn kill_9_mid_snapshot_leaves_a_valid_repository_and_the_next_run_resumes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = config(tmp.path(), "concurrency = 2");
    let spec = spec(&cfg);
    for i in 0..6 {
        random_file(&spec.source.join(format!("big-{i}")), 32, i + 1);
    }
    let total: u64 = (6 * 32) << 20;
    let cfg_path = tmp.path().join("tandem.toml");
    std::fs::write(&cfg_path, cfg_text(tmp.path())).expect("config");
    let agent = env!("CARGO_BIN_EXE_tandem-volume-test-agent");
    let repo_dir = Path::new(&spec.repository.location).to_path_buf();

    let mut child = tandem_testkit::KillOnDrop(
        Command::new(agent)
            .args([cfg_path.to_str().expect("utf8"), "data"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn agent"),
    );
    // Kill it once a few packs have landed, well before the snapshot can finish.
    // Packs hold tens of MiB each, so the 192 MiB snapshot is only a handful of them: kill
    // after the second, while the bandwidth limit keeps the rest in flight for seconds.
    wait_for("packs to be uploaded", Duration::from_secs(60), || {
        pack_count(&repo_dir) >= 2
    });
    assert!(
        child.try_wait().expect("agent status").is_none(),
        "the agent finished before it could be killed mid-snapshot"
    );
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let packs_before = pack_count(&repo_dir);
    eprintln!("killed with {packs_before} packs uploaded");

    let rt = rt();
    let repo = Repo::open(&spec, rt.handle().clone(), None, false).expect("open after kill");
    assert!(
        repo.snapshots().expect("list").is_empty(),
        "a partial snapshot is visible"
    );
    let check = repo.check(false).expect("check");
    assert!(check.ok, "{check:?}");
    if let Some(restic) = restic() {
        let o = Command::new(restic)
            .args([
                "--no-cache",
                "-r",
                repo_dir.to_str().expect("utf8"),
                "check",
            ])
            .env("RESTIC_PASSWORD", PASSWORD)
            .output()
            .expect("restic");
        // Unindexed packs are reported by restic as a hint, not an error.
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    }

    // The next run completes and adopts the packs that arrived instead of sending them again.
    let out = take_snapshot(
        &repo,
        &spec,
        &SnapshotFlags::default(),
        &CancellationToken::new(),
    )
    .expect("next run");
    assert!(out.resumed, "{out:?}");
    assert!(out.snapshot.is_some());
    eprintln!(
        "second run uploaded {} of {} bytes",
        out.uploaded_bytes, total
    );
    assert!(
        out.uploaded_bytes + (packs_before as u64 - 1) * (3 << 20) < total + (1 << 20),
        "re-sent data: uploaded {} with {packs_before} packs already there",
        out.uploaded_bytes
    );
    let target = tmp.path().join("restored");
    repo.restore(&RestoreRequest {
        snapshot: SnapshotSel::Latest,
        path: String::new(),
        target: target.clone(),
        delete: true,
        verify: false,
        dry_run: false,
    })
    .expect("restore");
    assert_eq!(manifest(&target), manifest(&spec.source));
    assert!(repo.check(true).expect("check").ok);
}

fn cfg_text(root: &Path) -> String {
    format!(
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
concurrency = 2
# Slow enough that the kill lands mid-snapshot on any machine: 192 MiB take ~8 s.
bandwidth = "24MiB/s"
"#,
        root = root.display()
    )
}

#[test]
fn full_disk_gives_a_clear_error_and_no_corrupt_state() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mnt = tmp.path().join("westus");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=6m",
            "tmpfs",
            mnt.to_str().expect("utf8"),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(
            std::env::var("TANDEM_CI").as_deref() != Ok("1"),
            "cannot mount a tmpfs (needs root)"
        );
        eprintln!("SKIP: cannot mount a tmpfs (needs root)");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&mnt);
    let cfg = config(tmp.path(), "");
    let spec = spec(&cfg);
    std::fs::write(spec.source.join("small"), b"fits").expect("write");
    let rt = rt();
    let repo = Repo::open(&spec, rt.handle().clone(), None, true).expect("open");
    let cancel = CancellationToken::new();
    take_snapshot(&repo, &spec, &SnapshotFlags::default(), &cancel).expect("first snapshot fits");
    random_file(&spec.source.join("big"), 16, 7);
    let err = take_snapshot(&repo, &spec, &SnapshotFlags::default(), &cancel)
        .expect_err("the disk is full");
    let msg = err.to_string();
    eprintln!("full disk error: {msg}");
    assert!(
        msg.contains("No space left") && msg.contains("full"),
        "{msg}"
    );
    assert_eq!(
        repo.snapshots().expect("list").len(),
        1,
        "no partial snapshot"
    );
    assert!(repo.check(false).expect("check").ok);

    // Grow the disk: the next attempt completes.
    assert!(
        Command::new("mount")
            .args(["-o", "remount,size=64m", mnt.to_str().expect("utf8")])
            .status()
            .expect("remount")
            .success()
    );
    let out =
        take_snapshot(&repo, &spec, &SnapshotFlags::default(), &cancel).expect("after growing");
    assert!(out.snapshot.is_some() && out.resumed);
    assert!(repo.check(true).expect("check").ok);
}

#[test]
fn unreachable_repository_reports_and_recovers() {
    let tmp = tempfile::tempdir().expect("tmp");
    // The repository's parent is a file, so the repository cannot be reached.
    std::fs::create_dir_all(tmp.path()).expect("mkdir");
    std::fs::write(tmp.path().join("westus"), b"not a directory").expect("write");
    let cfg = config(tmp.path(), "");
    let spec = Arc::new(spec(&cfg));
    std::fs::write(spec.source.join("f"), b"data").expect("write");
    let rt = rt();
    let err = Repo::open(&spec, rt.handle().clone(), None, true).expect_err("unreachable");
    let msg = err.to_string();
    assert!(msg.contains("repository") && msg.contains("hint"), "{msg}");

    let status = Arc::new(Status::new());
    let cancel = CancellationToken::new();
    let agent = rt.spawn(run_agent(
        spec.clone(),
        status.clone(),
        AgentOptions::default(),
        cancel.clone(),
    ));
    wait_for(
        "the agent to report the error",
        Duration::from_secs(10),
        || {
            status
                .agent_status("data/forward")
                .is_some_and(|s| s.state == "retrying" && s.last_error.is_some())
        },
    );
    // The lag keeps growing while the repository is unreachable (updated at each retry).
    wait_for("the lag to grow", Duration::from_secs(10), || {
        status
            .agent_status("data/forward")
            .is_some_and(|s| s.lag_seconds >= 1.0)
    });
    // The link comes back.
    std::fs::remove_file(tmp.path().join("westus")).expect("rm");
    let t0 = Instant::now();
    wait_for("a snapshot after recovery", Duration::from_secs(60), || {
        status
            .agent_status("data/forward")
            .is_some_and(|s| s.snapshots >= 1)
    });
    eprintln!("recovered in {:?}", t0.elapsed());
    cancel.cancel();
    rt.block_on(agent).expect("join").expect("agent");
}
