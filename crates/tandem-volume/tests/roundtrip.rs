//! Snapshot and restore real files; Debian's restic reads what Tandem wrote.

mod support;

use std::path::Path;
use std::process::Command;

use tandem_volume::repo::{Repo, RestoreRequest, SnapshotSel};
use tandem_volume::snapshot::{SnapshotFlags, take_snapshot};
use tokio_util::sync::CancellationToken;

use support::*;

fn restore_all(repo: &Repo, sel: SnapshotSel, target: &Path) -> tandem_volume::repo::RestoreReport {
    repo.restore(&RestoreRequest {
        snapshot: sel,
        path: String::new(),
        target: target.to_path_buf(),
        delete: true,
        verify: false,
        dry_run: false,
    })
    .expect("restore")
}

#[test]
fn snapshot_restore_and_changes_round_trip() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = config(tmp.path(), "");
    let spec = spec(&cfg);
    populate(&spec.source);
    let rt = rt();
    let repo = Repo::open(&spec, rt.handle().clone(), None, true).expect("open");
    assert!(repo.created());
    let cancel = CancellationToken::new();
    let flags = SnapshotFlags::default();

    let first = take_snapshot(&repo, &spec, &flags, &cancel).expect("snapshot");
    let s1 = first.snapshot.clone().expect("a snapshot was written");
    assert!(first.changed_during_read.is_empty() && first.unreadable.is_empty());
    let m1 = manifest(&spec.source);

    // Nothing changed: no new snapshot.
    let same = take_snapshot(&repo, &spec, &flags, &cancel).expect("snapshot");
    assert!(same.snapshot.is_none(), "{same:?}");

    // Create, modify, rename, delete.
    let d = &spec.source;
    std::fs::write(d.join("new.txt"), b"new").expect("write");
    std::fs::write(d.join("hello.txt"), b"hello again\n").expect("write");
    std::fs::rename(d.join("a/b/c/deep.txt"), d.join("a/renamed.txt")).expect("rename");
    std::fs::remove_file(d.join("a/small-3")).expect("rm");
    std::fs::remove_dir_all(d.join("empty")).expect("rm");
    let second = take_snapshot(&repo, &spec, &flags, &cancel).expect("snapshot");
    let s2 = second.snapshot.clone().expect("second snapshot");
    // Deduplication: the big and sparse files were not uploaded again.
    assert!(
        second.uploaded_bytes < 200_000,
        "uploaded {}",
        second.uploaded_bytes
    );
    let m2 = manifest(&spec.source);

    let out = tmp.path().join("restore-latest");
    let r = restore_all(&repo, SnapshotSel::Latest, &out);
    assert_eq!(r.snapshot.id, s2.id);
    assert_eq!(manifest(&out), m2);

    // Point in time: the first snapshot, by id and by time.
    let out1 = tmp.path().join("restore-first");
    restore_all(&repo, SnapshotSel::Id(s1.short_id.clone()), &out1);
    assert_eq!(manifest(&out1), m1);
    let at = SnapshotSel::parse(&s1.time).expect("time");
    let out1b = tmp.path().join("restore-first-by-time");
    restore_all(&repo, at, &out1b);
    assert_eq!(manifest(&out1b), m1);

    // Incremental: restoring the newest snapshot over the first one changes only what differs.
    let r = restore_all(&repo, SnapshotSel::Latest, &out1);
    assert_eq!(manifest(&out1), m2);
    assert!(r.files_restored <= 3, "{r:?}");

    // A single path.
    let one = tmp.path().join("one");
    repo.restore(&RestoreRequest {
        snapshot: SnapshotSel::Latest,
        path: "/a/renamed.txt".into(),
        target: one.join("renamed.txt"),
        delete: false,
        verify: false,
        dry_run: false,
    })
    .expect("restore path");
    assert_eq!(
        std::fs::read(one.join("renamed.txt")).expect("read"),
        b"deep"
    );

    let check = repo.check(true).expect("check");
    assert!(check.ok, "{check:?}");
    assert_eq!(repo.snapshots().expect("list").len(), 2);
}

#[test]
fn restic_lists_checks_and_restores_a_tandem_snapshot() {
    let Some(restic) = restic() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = config(tmp.path(), "");
    let spec = spec(&cfg);
    populate(&spec.source);
    let rt = rt();
    let repo = Repo::open(&spec, rt.handle().clone(), None, true).expect("open");
    let out = take_snapshot(
        &repo,
        &spec,
        &SnapshotFlags::default(),
        &CancellationToken::new(),
    )
    .expect("snapshot");
    let snap = out.snapshot.expect("written");
    let repo_dir = &spec.repository.location;
    let run = |args: &[&str]| {
        let o = Command::new(&restic)
            .args(["--no-cache", "-r", repo_dir])
            .args(args)
            .env("RESTIC_PASSWORD", PASSWORD)
            .output()
            .expect("run restic");
        assert!(
            o.status.success(),
            "restic {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let cat = run(&["cat", "config"]);
    assert!(cat.contains("\"version\": 2"), "{cat}");
    let list = run(&["snapshots", "--json"]);
    assert!(list.contains(&snap.id), "{list}");
    let check = run(&["check", "--read-data"]);
    assert!(check.contains("no errors were found"), "{check}");
    let target = tmp.path().join("restic-restore");
    run(&[
        "restore",
        &snap.short_id,
        "--target",
        target.to_str().expect("utf8"),
    ]);
    assert_eq!(manifest(&target), manifest(&spec.source));
}
