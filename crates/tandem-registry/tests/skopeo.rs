//! A real client: skopeo copies an image (built here into an `oci:` layout, nothing downloaded)
//! into the eastus replica, inspects it and copies it back out of the westus replica; the
//! digests are equal; podman pulls from one replica and pushes to the other. Needs Debian's
//! `skopeo` and `podman`; skipped with a message when missing (fails under `TANDEM_CI=1`).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Lab, Opts, PASSWORD, USER, eventually, sha256};

/// A one-file tar archive (ustar), built by hand.
fn tar_with(name: &str, content: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let put = |h: &mut [u8; 512], off: usize, len: usize, v: &str| {
        h[off..off + v.len().min(len)].copy_from_slice(&v.as_bytes()[..v.len().min(len)]);
    };
    put(&mut h, 100, 8, "0000644\0");
    put(&mut h, 108, 8, "0000000\0");
    put(&mut h, 116, 8, "0000000\0");
    put(&mut h, 124, 12, &format!("{:011o}\0", content.len()));
    put(&mut h, 136, 12, "00000000000\0");
    h[156] = b'0';
    put(&mut h, 257, 6, "ustar\0");
    put(&mut h, 263, 2, "00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    put(&mut h, 148, 8, &format!("{sum:06o}\0 "));
    let mut out = h.to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// gzip with stored (uncompressed) deflate blocks: a valid gzip stream without a compressor,
/// so skopeo sees compressed layers and copies them unchanged.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut table = [0u32; 256];
    for (i, t) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *t = c;
    }
    let crc = !data.iter().fold(!0u32, |c, &b| {
        table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8)
    });
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(65_535).collect()
    };
    let n = chunks.len();
    for (i, c) in chunks.into_iter().enumerate() {
        out.push(u8::from(i + 1 == n));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn write_blob(dir: &Path, data: &[u8]) -> String {
    let d = sha256(data);
    let hex = d.trim_start_matches("sha256:");
    std::fs::write(dir.join("blobs/sha256").join(hex), data).expect("blob");
    d
}

/// Build an OCI image layout with one image tagged `v1`; returns the manifest digest.
fn build_layout(dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("blobs/sha256")).expect("layout dir");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("oci-layout");
    let tar1 = tar_with("hello.txt", b"hello from tandem\n");
    let layer = gzip_stored(&tar1);
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let tar2 = tar_with("data.bin", &big);
    let layer2 = gzip_stored(&tar2);
    let l1 = write_blob(dir, &layer);
    let l2 = write_blob(dir, &layer2);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/hello"]}},"rootfs":{{"type":"layers","diff_ids":["{}","{}"]}}}}"#,
        sha256(&tar1),
        sha256(&tar2)
    );
    let c = write_blob(dir, config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{c}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{l1}","size":{}}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{l2}","size":{}}}]}}"#,
        config.len(),
        layer.len(),
        layer2.len()
    );
    let m = write_blob(dir, manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{m}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"v1"}}}}]}}"#,
        manifest.len()
    );
    std::fs::write(dir.join("index.json"), index).expect("index");
    m
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copy_into_eastus_and_out_of_westus() {
    if !common::have_tool("skopeo") {
        return;
    }
    let lab = Lab::start(&["eastus", "westus"], Opts::default()).await;
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    let digest = build_layout(&src);
    let creds = format!("{USER}:{PASSWORD}");
    let east = lab.nodes[0].addr;
    let west = lab.nodes[1].addr;
    for repo in ["lab/app", "public/app"] {
        let src_ref = format!("oci:{}:v1", src.display());
        let dst = format!("docker://{east}/{repo}:v1");
        let (s, d, c) = (src_ref.clone(), dst.clone(), creds.clone());
        tokio::task::spawn_blocking(move || {
            skopeo(&[
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                &c,
                &s,
                &d,
            ])
        })
        .await
        .expect("copy in");
    }
    // westus has it (replicated, or read through if replication is still on its way).
    let west_client = lab.client(1);
    eventually(Duration::from_secs(20), || async {
        west_client.tag_digest("lab/app", "v1").await
    })
    .await
    .expect("replicated to westus");
    let inspected = {
        let c = creds.clone();
        tokio::task::spawn_blocking(move || {
            skopeo(&[
                "inspect",
                "--tls-verify=false",
                "--creds",
                &c,
                &format!("docker://{west}/lab/app:v1"),
            ])
        })
        .await
        .expect("inspect")
    };
    let v: serde_json::Value = serde_json::from_str(&inspected).expect("inspect json");
    assert_eq!(v["Digest"], digest);
    assert_eq!(v["Layers"].as_array().map(|l| l.len()), Some(2));
    // Anonymous pull of a public repository with a real client.
    let raw = tokio::task::spawn_blocking(move || {
        skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{west}/public/app:v1"),
        ])
    })
    .await
    .expect("inspect raw");
    assert_eq!(sha256(raw.as_bytes()), digest);
    // Copy back out of westus; the layout's manifest digest equals the original.
    let out = tmp.path().join("out");
    let out_ref = format!("oci:{}:v1", out.display());
    let c = creds.clone();
    tokio::task::spawn_blocking(move || {
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &c,
            &format!("docker://{west}/lab/app:v1"),
            &out_ref,
        ])
    })
    .await
    .expect("copy out");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).expect("index"))
            .expect("json");
    assert_eq!(index["manifests"][0]["digest"], digest);
    for entry in std::fs::read_dir(src.join("blobs/sha256")).expect("blobs") {
        let entry = entry.expect("entry");
        let copied = out.join("blobs/sha256").join(entry.file_name());
        assert_eq!(
            std::fs::read(entry.path()).expect("src blob"),
            std::fs::read(&copied).unwrap_or_default(),
            "blob {:?} differs",
            entry.file_name()
        );
    }
    lab.shutdown().await;
}

#[test]
fn hand_built_tar_is_valid() {
    let t = tar_with("a.txt", b"abc");
    assert_eq!(t.len() % 512, 0);
    assert_eq!(&t[257..262], b"ustar");
}

/// podman (Debian's, with its own throw-away storage in vfs mode so no daemon, overlay mount
/// or container runtime is involved): pull an image from the westus replica, tag it and push
/// it to eastus with credentials; the push replicates back and every layer it names is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_pulls_from_westus_and_pushes_to_eastus() {
    if !common::have_tool("podman") || !common::have_tool("skopeo") {
        return;
    }
    let lab = Lab::start(&["eastus", "westus"], Opts::default()).await;
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    build_layout(&src);
    let creds = format!("{USER}:{PASSWORD}");
    let east = lab.nodes[0].addr;
    let west = lab.nodes[1].addr;
    {
        let (s, d, c) = (
            format!("oci:{}:v1", src.display()),
            format!("docker://{east}/lab/pod:v1"),
            creds.clone(),
        );
        tokio::task::spawn_blocking(move || {
            skopeo(&[
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                &c,
                &s,
                &d,
            ])
        })
        .await
        .expect("seed image");
    }
    let root = tmp.path().join("podman");
    let podman = move |args: Vec<String>| {
        let mut base: Vec<String> = [
            "--root",
            &root.join("root").display().to_string(),
            "--runroot",
            &root.join("run").display().to_string(),
            "--storage-driver",
            "vfs",
            "--events-backend",
            "none",
            "--cgroup-manager",
            "cgroupfs",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        base.extend(args);
        let out = Command::new("podman")
            .args(&base)
            .output()
            .expect("run podman");
        assert!(
            out.status.success(),
            "podman {base:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let from = format!("{west}/lab/pod:v1");
    let to = format!("{east}/lab/pod:from-podman");
    let (p, c, f, t) = (podman.clone(), creds.clone(), from.clone(), to.clone());
    tokio::task::spawn_blocking(move || {
        // westus serves it by replication or read-through.
        p(vec![
            "pull".into(),
            "--tls-verify=false".into(),
            "--creds".into(),
            c.clone(),
            f.clone(),
        ]);
        p(vec!["tag".into(), f, t.clone()]);
        p(vec![
            "push".into(),
            "--tls-verify=false".into(),
            "--creds".into(),
            c,
            t,
        ]);
    })
    .await
    .expect("podman");
    // The pushed manifest is complete in eastus and replicates to westus.
    let pushed = lab
        .client(0)
        .tag_digest("lab/pod", "from-podman")
        .await
        .expect("podman's push is tagged in eastus");
    let west_client = lab.client(1);
    let replicated = eventually(Duration::from_secs(20), || async {
        west_client.tag_digest("lab/pod", "from-podman").await
    })
    .await
    .expect("podman's push replicated to westus");
    assert_eq!(pushed, replicated);
    let c = creds.clone();
    let raw = tokio::task::spawn_blocking(move || {
        skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--creds",
            &c,
            &format!("docker://{west}/lab/pod:from-podman"),
        ])
    })
    .await
    .expect("inspect");
    let v: serde_json::Value = serde_json::from_str(&raw).expect("inspect json");
    assert_eq!(v["Layers"].as_array().map(|l| l.len()), Some(2), "{v}");
    lab.shutdown().await;
}
