//! The agent and the standby running together: changes flow to the standby, the lag is
//! measured, activation fences the old primary, and a failover loses no more than the RPO.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tandem_volume::snapshot::{SnapshotFlags, take_snapshot};
use tandem_volume::{AgentOptions, Repo, Status, VolumeError, activate, run_agent, run_standby};
use tokio_util::sync::CancellationToken;

use support::*;

#[test]
fn agent_replicates_standby_follows_and_activation_fences() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = config(tmp.path(), "");
    let spec = Arc::new(spec(&cfg));
    populate(&spec.source);
    let rt = rt();
    let status = Arc::new(Status::new());
    let cancel = CancellationToken::new();
    let agent = rt.spawn(run_agent(
        spec.clone(),
        status.clone(),
        AgentOptions::default(),
        cancel.clone(),
    ));
    let standby = rt.spawn(run_standby(spec.clone(), status.clone(), cancel.clone()));
    let sb_dir = spec.standby.as_ref().expect("standby").dir.clone();

    wait_for(
        "standby to hold the source",
        Duration::from_secs(30),
        || sb_dir.exists() && manifest(&sb_dir) == manifest(&spec.source),
    );
    // A change reaches the standby through inotify, within a few intervals.
    let t0 = Instant::now();
    std::fs::write(spec.source.join("a/changed.txt"), b"after start").expect("write");
    std::fs::remove_file(spec.source.join("hello.txt")).expect("rm");
    wait_for(
        "the change to reach the standby",
        Duration::from_secs(20),
        || manifest(&sb_dir) == manifest(&spec.source),
    );
    let took = t0.elapsed();
    eprintln!("change reached the standby in {took:?}");
    let st = status.agent_status("data/forward").expect("agent status");
    assert_eq!(st.state, "idle", "{st:?}");
    assert!(st.watching && st.snapshots >= 2, "{st:?}");
    assert!(st.lag_seconds < 5.0, "{st:?}");
    let json = status.json().to_string();
    assert!(json.contains("\"lag_seconds\""), "{json}");
    let mut reg = prometheus_client::registry::Registry::default();
    status.register(&mut reg);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).expect("encode");
    assert!(
        text.contains(
            "tandem_volume_replication_lag_seconds{volume=\"data\",direction=\"forward\"}"
        ),
        "{text}"
    );

    // Activate the standby: the standby loop stops, the directory is live, the primary is fenced.
    let rep = rt
        .block_on(rt.spawn_blocking({
            let (s, h) = (spec.clone(), rt.handle().clone());
            move || activate(&s, h, true)
        }))
        .expect("join")
        .expect("activate");
    eprintln!("activation: {rep:?}");
    assert!(rep.fenced, "{rep:?}");
    assert!(rep.seconds < 5.0, "{rep:?}");
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), standby).await })
        .expect("standby stops after activation")
        .expect("join")
        .expect("standby ok");
    std::fs::write(spec.source.join("after-failover"), b"split brain?").expect("write");
    let r = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), agent).await })
        .unwrap_or_else(|_| {
            // Say where the agent was, so that a rare failure here can be told apart.
            panic!(
                "agent stops when fenced: still running after 20 s; its status: {:?}; snapshots: {:?}",
                status.agent_status("data/forward"),
                Repo::open(&spec, rt.handle().clone(), None, false).and_then(|r| r.snapshots())
            )
        })
        .expect("join");
    assert!(matches!(r, Err(VolumeError::Fenced { .. })), "{r:?}");
    assert!(!sb_dir.join("after-failover").exists());
    cancel.cancel();
}

#[test]
fn failover_loses_at_most_the_measured_rpo() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = config(tmp.path(), "");
    let spec = Arc::new(spec(&cfg));
    let rt = rt();
    let status = Arc::new(Status::new());
    let east = CancellationToken::new(); // the eastus region
    let west = CancellationToken::new();
    rt.spawn(run_agent(
        spec.clone(),
        status.clone(),
        AgentOptions::default(),
        east.clone(),
    ));
    rt.spawn(run_standby(spec.clone(), status.clone(), west.clone()));

    // Steady state first: the standby holds a snapshot.
    std::fs::write(spec.source.join("base"), b"base").expect("write");
    wait_for(
        "the first snapshot to reach the standby",
        Duration::from_secs(60),
        || {
            status
                .standby_status("data/forward")
                .is_some_and(|s| s.applied.is_some())
        },
    );
    // Write continuously in eastus: one file per write, named by sequence and time.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (dir, stop) = (spec.source.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut written = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let ms = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .expect("time")
                    .as_millis();
                std::fs::write(dir.join(format!("w{i:06}")), format!("{ms}\n")).expect("write");
                written.push((i, ms));
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            written
        })
    };
    std::thread::sleep(Duration::from_secs(5));
    // Fail the region: writes and replication stop at the same instant.
    let lag_at_failure = status
        .agent_status("data/forward")
        .map_or(f64::NAN, |s| s.lag_seconds);
    eprintln!("status at failure: {}", status.json());
    let failed_at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("time")
        .as_millis();
    east.cancel();
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().expect("writer");

    let t0 = Instant::now();
    let rep = rt
        .block_on(rt.spawn_blocking({
            let (s, h) = (spec.clone(), rt.handle().clone());
            move || activate(&s, h, true)
        }))
        .expect("join")
        .expect("activate");
    let activation = t0.elapsed();
    west.cancel();

    let sb_dir = spec.standby.as_ref().expect("standby").dir.clone();
    let have: BTreeSet<String> = std::fs::read_dir(&sb_dir)
        .expect("standby dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    let lost: Vec<&(u64, u128)> = written
        .iter()
        .filter(|(i, _)| !have.contains(&format!("w{i:06}")))
        .collect();
    let oldest_lost_age = lost.first().map_or(0.0, |(_, ms)| {
        (failed_at.saturating_sub(*ms)) as f64 / 1000.0
    });
    eprintln!(
        "FAILOVER REPORT: {} writes, {} lost; oldest lost write {:.2}s before the failure; measured lag at failure {:.2}s; activation took {:.3}s (data age {:?}s)",
        written.len(),
        lost.len(),
        oldest_lost_age,
        lag_at_failure,
        activation.as_secs_f64(),
        rep.data_age_seconds
    );
    // Whatever was lost was written within the measured lag (plus the 100ms status tick).
    assert!(
        oldest_lost_age <= lag_at_failure + 0.25,
        "lost {oldest_lost_age}s > lag {lag_at_failure}s"
    );
    // Lost writes are a suffix: the standby never has a hole.
    if let Some((first_lost, _)) = lost.first() {
        assert!(lost.iter().all(|(i, _)| i >= first_lost));
        assert_eq!(lost.len() as u64, written.len() as u64 - first_lost);
    }
    assert!(
        lag_at_failure < 2.0 * 1.0 + 1.5,
        "lag {lag_at_failure}s with a 1s interval"
    );
    assert!(activation < Duration::from_secs(5));
}

#[test]
fn retention_keeps_what_kept_snapshots_need() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = config(
        tmp.path(),
        "[volume.volumes.data.retention]\nkeep_last = 2\n",
    );
    let spec = spec(&cfg);
    let rt = rt();
    let repo = Repo::open(&spec, rt.handle().clone(), None, true).expect("open");
    let cancel = CancellationToken::new();
    let mut manifests = Vec::new();
    for i in 0..4 {
        std::fs::write(
            spec.source.join(format!("f{i}")),
            vec![i as u8; 200_000 + i * 1000],
        )
        .expect("write");
        if i == 2 {
            std::fs::remove_file(spec.source.join("f0")).expect("rm");
        }
        take_snapshot(&repo, &spec, &SnapshotFlags::default(), &cancel).expect("snapshot");
        manifests.push(manifest(&spec.source));
    }
    let rep = repo
        .forget_and_prune(spec.retention.as_ref().expect("retention"), Duration::ZERO)
        .expect("prune");
    assert_eq!((rep.kept.len(), rep.forgotten.len()), (2, 2), "{rep:?}");
    assert!(repo.check(true).expect("check").ok);
    let snaps = repo.snapshots().expect("list");
    for (s, m) in snaps.iter().zip(&manifests[2..]) {
        let out = tmp.path().join(format!("r-{}", s.short_id));
        repo.restore(&tandem_volume::RestoreRequest {
            snapshot: tandem_volume::SnapshotSel::Id(s.id.clone()),
            path: String::new(),
            target: out.clone(),
            delete: true,
            verify: false,
            dry_run: false,
        })
        .expect("restore");
        assert_eq!(&manifest(&out), m);
    }
}

/// The way back: after westus's standby was activated and took writes, `reverse` replicates it
/// into eastus's repository and keeps eastus's old directory as its standby; activating that
/// makes eastus live again with everything westus wrote, and fences westus.
#[test]
fn reverse_replicates_the_activated_standby_back_and_fails_back() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = config(tmp.path(), "");
    let fwd = Arc::new(spec(&cfg));
    let rev = Arc::new(
        tandem_volume::VolumeSpec::new(&cfg, &cfg.volumes[0], tandem_volume::Direction::Reverse)
            .expect("reverse spec"),
    );
    populate(&fwd.source);
    let rt = rt();
    let status = Arc::new(Status::new());
    let east = CancellationToken::new();
    let west = CancellationToken::new();
    rt.spawn(run_agent(
        fwd.clone(),
        status.clone(),
        AgentOptions::default(),
        east.clone(),
    ));
    rt.spawn(run_standby(fwd.clone(), status.clone(), west.clone()));
    let west_dir = fwd.standby.as_ref().expect("standby").dir.clone();
    wait_for("the westus standby", Duration::from_secs(30), || {
        west_dir.exists() && manifest(&west_dir) == manifest(&fwd.source)
    });

    // eastus fails: its agent stops; westus activates and takes writes.
    east.cancel();
    let (s, h) = (fwd.clone(), rt.handle().clone());
    let rep = rt
        .block_on(rt.spawn_blocking(move || activate(&s, h, false)))
        .expect("join")
        .expect("activate westus");
    eprintln!("westus activated: {rep:?}");
    std::fs::write(west_dir.join("written-in-westus"), b"while eastus was down").expect("write");
    std::fs::remove_file(west_dir.join("hello.txt")).expect("rm");

    // eastus returns: reverse replication (westus -> eastus's repository -> eastus's directory).
    assert_eq!(rev.source, west_dir);
    let back = CancellationToken::new();
    let agent = rt.spawn(run_agent(
        rev.clone(),
        status.clone(),
        AgentOptions::default(),
        back.clone(),
    ));
    let standby = rt.spawn(run_standby(rev.clone(), status.clone(), back.clone()));
    wait_for(
        "westus's writes to reach eastus",
        Duration::from_secs(60),
        || manifest(&fwd.source) == manifest(&west_dir),
    );
    assert_eq!(
        std::fs::read(fwd.source.join("written-in-westus")).expect("replicated back"),
        b"while eastus was down"
    );
    assert!(status.agent_status("data/reverse").is_some());

    // Fail back: activate eastus; westus's reverse agent is fenced.
    let (s, h) = (rev.clone(), rt.handle().clone());
    let rep = rt
        .block_on(rt.spawn_blocking(move || activate(&s, h, true)))
        .expect("join")
        .expect("activate eastus");
    eprintln!("eastus activated again: {rep:?}");
    assert!(rep.fenced, "{rep:?}");
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), standby).await })
        .expect("reverse standby stops after activation")
        .expect("join")
        .expect("standby ok");
    std::fs::write(west_dir.join("late"), b"after failback").expect("write");
    let r = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), agent).await })
        .expect("reverse agent stops when fenced")
        .expect("join");
    assert!(matches!(r, Err(VolumeError::Fenced { .. })), "{r:?}");
    assert!(!fwd.source.join("late").exists());
    back.cancel();
    west.cancel();
}
