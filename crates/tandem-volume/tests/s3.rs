//! The repository in S3: a volume replicated into a bucket served by `s3s-fs` on loopback
//! (SigV4-signed requests through `object_store`'s S3 client, the path a real bucket takes).
//! Snapshots, an incremental change, restore byte for byte, `check`, and Debian's restic
//! listing, checking and restoring the same S3 repository.

mod support;

use std::process::Command;

use tandem_config::volume::VolumeConfig;
use tandem_testkit::s3::{ACCESS_KEY, REGION, S3Server, SECRET_KEY};
use tandem_volume::repo::{Repo, RestoreRequest, SnapshotSel};
use tandem_volume::snapshot::{SnapshotFlags, take_snapshot};
use tokio_util::sync::CancellationToken;

use support::*;

fn s3_config(root: &std::path::Path, s3: &S3Server) -> VolumeConfig {
    let options = s3.toml_options();
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
repository = "s3://westus-volumes/data"
repository_options = {options}
password = "{PASSWORD}"
"#,
        root = root.display()
    );
    std::fs::create_dir_all(root.join("eastus/data")).expect("mkdir");
    tandem_config::parse(&src, "s3.toml")
        .expect("valid config")
        .volume
        .expect("volume section")
}

#[test]
fn snapshots_in_s3_restore_and_restic_reads_them() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rt = rt();
    let s3_root = tmp.path().join("s3");
    let s3 = rt.block_on(S3Server::start(&s3_root));
    s3.bucket("westus-volumes");
    let cfg = s3_config(tmp.path(), &s3);
    let spec =
        tandem_volume::VolumeSpec::new(&cfg, &cfg.volumes[0], tandem_volume::Direction::Forward)
            .expect("spec");
    populate(&spec.source);
    let repo = Repo::open(&spec, rt.handle().clone(), None, true).expect("create in S3");
    let cancel = CancellationToken::new();
    let flags = SnapshotFlags::default();
    let first = take_snapshot(&repo, &spec, &flags, &cancel).expect("snapshot into S3");
    assert!(first.snapshot.is_some());
    std::fs::write(spec.source.join("changed.txt"), b"second snapshot").expect("write");
    std::fs::remove_file(spec.source.join("hello.txt")).expect("rm");
    let second = take_snapshot(&repo, &spec, &flags, &cancel).expect("incremental");
    assert!(second.snapshot.is_some());
    assert!(
        second.uploaded_bytes < 200_000,
        "incremental re-sent {} bytes",
        second.uploaded_bytes
    );
    assert_eq!(repo.snapshots().expect("list").len(), 2);

    // The objects are in the bucket, in the restic layout.
    let bucket = s3_root.join("westus-volumes/data");
    for d in ["config", "keys", "snapshots", "index", "data"] {
        assert!(bucket.join(d).exists(), "{d} missing in the bucket");
    }

    // A fresh open (the westus side) restores byte for byte, and the repository checks.
    let repo2 = Repo::open(&spec, rt.handle().clone(), None, false).expect("open from S3");
    let target = tmp.path().join("restored");
    repo2
        .restore(&RestoreRequest {
            snapshot: SnapshotSel::Latest,
            path: String::new(),
            target: target.clone(),
            delete: true,
            verify: true,
            dry_run: false,
        })
        .expect("restore from S3");
    assert_eq!(manifest(&target), manifest(&spec.source));
    let check = repo2.check(true).expect("check");
    assert!(check.ok, "{check:?}");

    // Debian's restic reads the same repository over S3.
    if let Some(restic) = restic() {
        let repo_url = format!("s3:{}/westus-volumes/data", s3.endpoint());
        let run = |args: &[&str]| {
            let o = Command::new(&restic)
                .args(["--no-cache", "-r", &repo_url])
                .args(args)
                .env("RESTIC_PASSWORD", PASSWORD)
                .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
                .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
                .env("AWS_DEFAULT_REGION", REGION)
                .output()
                .expect("restic");
            assert!(
                o.status.success(),
                "restic {args:?}: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        // restic runs outside the runtime; the S3 server keeps serving on its workers.
        let listed = run(&["snapshots", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&listed).expect("json");
        assert_eq!(v.as_array().map(Vec::len), Some(2), "{listed}");
        run(&["check", "--read-data"]);
        let out = tmp.path().join("restic-restored");
        run(&["restore", "latest", "--target", out.to_str().expect("utf8")]);
        assert_eq!(manifest(&out), manifest(&spec.source));
    }
    s3.stop();
}
