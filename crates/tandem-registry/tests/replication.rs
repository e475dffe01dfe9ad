//! Two (or three) replicas replicating to each other on loopback: pushes and deletes propagate,
//! concurrent pushes of one tag converge, read-through serves what has not arrived, a replica
//! stopped mid-replication catches up, a partition heals, GC under concurrent pushes keeps
//! everything referenced.

mod common;

use std::time::Duration;

use common::{Client, Lab, Opts, eventually, image, sha256};
use reqwest::Method;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

async fn pullable(c: &Client, repo: &str, tag: &str, img: &common::Image) -> bool {
    let r = c.get(&format!("/v2/{repo}/manifests/{tag}")).await;
    if r.status() != 200 {
        return false;
    }
    let Ok(body) = r.bytes().await else {
        return false;
    };
    if body.as_ref() != img.manifest.as_slice() {
        return false;
    }
    for blob in std::iter::once(&img.config).chain(img.layers.iter()) {
        let r = c.get(&format!("/v2/{repo}/blobs/{}", sha256(blob))).await;
        if r.status() != 200 {
            return false;
        }
        match r.bytes().await {
            Ok(b) if b.as_ref() == blob.as_slice() => {}
            _ => return false,
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_in_one_region_pull_in_the_other() {
    let lab = Lab::start(&["eastus", "westus"], Opts::default()).await;
    let (east, west) = (lab.client(0), lab.client(1));
    let img = image(21, &[50_000, 700_000]);
    east.push_image("app/web", "v1", &img).await;
    let digest = eventually(WAIT, || async { west.tag_digest("app/web", "v1").await }).await;
    assert_eq!(digest.as_deref(), Some(img.digest.as_str()));
    assert!(pullable(&west, "app/web", "v1", &img).await);
    // And the other way.
    let img2 = image(22, &[1234]);
    west.push_image("app/api", "v2", &img2).await;
    eventually(WAIT, || async { east.tag_digest("app/api", "v2").await })
        .await
        .expect("west → east");
    assert!(pullable(&east, "app/api", "v2", &img2).await);
    // Status knows both replicas hold the tag, and the lag is zero once caught up.
    let st = eventually(WAIT, || async {
        let v = lab.handle(0).repository_status("app/web").await;
        (v["tags"][0]["replicas"] == serde_json::json!(["eastus", "westus"])).then_some(v)
    })
    .await;
    assert!(
        st.is_some(),
        "{}",
        lab.handle(0).repository_status("app/web").await
    );
    let s = eventually(WAIT, || async {
        let v = lab.handle(1).status().await;
        (v["peers"][0]["lag_changes"] == 0 && v["in_sync"] == true).then_some(v)
    })
    .await
    .expect("west in sync");
    assert_eq!(s["peers"][0]["region"], "eastus");
    let m = lab.handle(1).metrics_text();
    assert!(
        m.contains("tandem_registry_replication_lag_changes{peer=\"eastus\"} 0"),
        "{m}"
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_through_serves_and_stores_what_has_not_replicated() {
    // westus does not pull eastus's log: everything it serves of eastus comes by read-through.
    let mut lab = Lab::start_with(&["eastus", "westus"], Opts::default(), &[1]).await;
    let (east, west) = (lab.client(0), lab.client(1));
    let img = image(31, &[300_000]);
    east.push_image("rt/app", "v1", &img).await;
    assert!(
        pullable(&west, "rt/app", "v1", &img).await,
        "served from the peer"
    );
    let m = lab.handle(1).metrics_text();
    assert!(
        m.contains("tandem_registry_read_through_total{kind=\"manifest\",result=\"hit\"}"),
        "{m}"
    );
    // Stored locally: with eastus gone, westus still serves it.
    lab.stop(0).await;
    assert!(
        pullable(&west, "rt/app", "v1", &img).await,
        "served from local storage"
    );
    // What neither has is still a 404 (quickly, the peer being down).
    let started = std::time::Instant::now();
    assert_eq!(west.get("/v2/rt/app/manifests/nope").await.status(), 404);
    assert!(started.elapsed() < Duration::from_secs(10));
    // A client that HEADs blobs before pushing (skopeo does) sees them via read-through and
    // can push a manifest that references them.
    lab.restart(0).await;
    let img2 = image(32, &[4096]);
    east.push_blob("rt/app", &img2.config).await;
    east.push_blob("rt/app", &img2.layers[0]).await;
    for b in [&img2.config, &img2.layers[0]] {
        let r = west
            .req(Method::HEAD, &format!("/v2/rt/app/blobs/{}", sha256(b)))
            .send()
            .await
            .expect("head");
        assert_eq!(r.status(), 200);
    }
    let r = west
        .put_manifest(
            "rt/app",
            "v2",
            "application/vnd.oci.image.manifest.v1+json",
            &img2.manifest,
        )
        .await;
    assert_eq!(r.status(), 201);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_of_one_tag_converge() {
    let lab = Lab::start(&["eastus", "westus"], Opts::default()).await;
    let (east, west) = (lab.client(0), lab.client(1));
    let tags: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
    let mut tasks = Vec::new();
    for (i, t) in tags.iter().enumerate() {
        for (side, c) in [(0u64, east.clone()), (1u64, west.clone())] {
            let t = t.clone();
            tasks.push(tokio::spawn(async move {
                let img = image(1000 + i as u64 * 2 + side, &[100]);
                c.push_image("race/app", &t, &img).await;
                img.digest
            }));
        }
    }
    let mut pushed = Vec::new();
    for t in tasks {
        pushed.push(t.await.expect("push"));
    }
    for t in &tags {
        let same = eventually(WAIT, || async {
            let a = east.tag_digest("race/app", t).await?;
            let b = west.tag_digest("race/app", t).await?;
            // Both must settle on the same value, and stay there.
            (a == b).then_some(a)
        })
        .await
        .unwrap_or_else(|| panic!("tag {t} did not converge"));
        assert!(pushed.contains(&same));
    }
    // Settled: identical registers (stamps included) on both sides.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = lab.handle(0).repository_status("race/app").await;
    let b = lab.handle(1).repository_status("race/app").await;
    for i in 0..tags.len() {
        assert_eq!(a["tags"][i]["digest"], b["tags"][i]["digest"]);
        assert_eq!(a["tags"][i]["origin"], b["tags"][i]["origin"]);
        assert_eq!(a["tags"][i]["written_ms"], b["tags"][i]["written_ms"]);
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_propagate_and_tombstones_expire() {
    let lab = Lab::start(&["eastus", "westus"], Opts::default()).await;
    let (east, west) = (lab.client(0), lab.client(1));
    let img = image(41, &[1000]);
    east.push_image("del/app", "v1", &img).await;
    east.put_manifest(
        "del/app",
        "v2",
        "application/vnd.oci.image.manifest.v1+json",
        &img.manifest,
    )
    .await;
    eventually(WAIT, || async { west.tag_digest("del/app", "v2").await })
        .await
        .expect("replicated");
    // Delete a tag in westus: gone in eastus.
    let r = west
        .req(Method::DELETE, "/v2/del/app/manifests/v2")
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 202);
    eventually(WAIT, || async {
        east.tag_digest("del/app", "v2")
            .await
            .is_none()
            .then_some(())
    })
    .await
    .expect("tag delete reached eastus");
    // Delete the manifest in eastus: gone in westus, with its tags.
    let r = east
        .req(
            Method::DELETE,
            &format!("/v2/del/app/manifests/{}", img.digest),
        )
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 202);
    eventually(WAIT, || async {
        (west
            .get(&format!("/v2/del/app/manifests/{}", img.digest))
            .await
            .status()
            == 404
            && west.tag_digest("del/app", "v1").await.is_none())
        .then_some(())
    })
    .await
    .expect("manifest delete reached westus");
    // Blob unlink propagates too.
    let r = east
        .req(
            Method::DELETE,
            &format!("/v2/del/app/blobs/{}", sha256(&img.layers[0])),
        )
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 202);
    eventually(WAIT, || async {
        (west
            .get(&format!("/v2/del/app/blobs/{}", sha256(&img.layers[0])))
            .await
            .status()
            == 404)
            .then_some(())
    })
    .await
    .expect("blob delete reached westus");
    // Every replica has seen every delete: the tombstones go away on both sides.
    for i in 0..2 {
        eventually(WAIT, || async {
            let v = lab.handle(i).status().await;
            (v["counts"]["tombstones"] == 0).then_some(())
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "tombstones did not expire on replica {i}: {}",
                futures::executor::block_on(lab.handle(i).status())
            )
        });
    }
    // A re-push after the delete wins (newer stamp) everywhere.
    east.push_image("del/app", "v1", &img).await;
    eventually(WAIT, || async { west.tag_digest("del/app", "v1").await })
        .await
        .expect("re-push replicated");
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_stopped_mid_replication_catches_up() {
    let mut lab = Lab::start(&["eastus", "westus"], Opts::default()).await;
    let east = lab.client(0);
    let mut imgs = Vec::new();
    for i in 0..12u64 {
        imgs.push(image(500 + i, &[400_000, 10_000]));
    }
    // Push while westus replicates, stop westus part way through (its in-flight batch and
    // downloads are cut), keep pushing, restart it.
    let pusher = {
        let east = east.clone();
        let imgs = imgs.clone();
        tokio::spawn(async move {
            for (i, img) in imgs.into_iter().enumerate() {
                east.push_image("crash/app", &format!("v{i}"), &img).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    lab.stop(1).await;
    pusher.await.expect("pushes");
    lab.restart(1).await;
    let west = lab.client(1);
    for (i, img) in imgs.iter().enumerate() {
        let t = format!("v{i}");
        eventually(WAIT, || async { west.tag_digest("crash/app", &t).await })
            .await
            .expect("caught up");
        assert!(pullable(&west, "crash/app", &t, img).await, "{t}");
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_heals_without_operator_action() {
    let lab = Lab::start(&["eastus", "westus"], Opts::default()).await;
    let (east, west) = (lab.client(0), lab.client(1));
    let base = image(61, &[1000]);
    east.push_image("part/app", "base", &base).await;
    eventually(WAIT, || async { west.tag_digest("part/app", "base").await })
        .await
        .expect("before the cut");
    // Cut the link both ways; both sides keep taking writes, including the same tag.
    lab.proxies[0].cut();
    lab.proxies[1].cut();
    let e = image(62, &[2000]);
    let w = image(63, &[3000]);
    east.push_image("part/app", "east-only", &e).await;
    west.push_image("part/app", "west-only", &w).await;
    east.push_image("part/app", "both", &e).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    west.push_image("part/app", "both", &w).await;
    let r = west
        .req(Method::DELETE, "/v2/part/app/manifests/base")
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 202);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        east.tag_digest("part/app", "west-only").await.is_none(),
        "partitioned"
    );
    // The lag shows up in status while partitioned.
    let s = lab.handle(0).status().await;
    assert!(
        s["peers"][0]["last_error"].is_string() || s["peers"][0]["lag_changes"] != 0,
        "{s}"
    );
    lab.proxies[0].heal();
    lab.proxies[1].heal();
    let converged = eventually(WAIT, || async {
        let mut all = Vec::new();
        for c in [&east, &west] {
            all.push((
                c.tag_digest("part/app", "east-only").await?,
                c.tag_digest("part/app", "west-only").await?,
                c.tag_digest("part/app", "both").await?,
                c.tag_digest("part/app", "base").await.is_none(),
            ));
        }
        (all[0] == all[1] && all[0].3).then(|| all[0].clone())
    })
    .await
    .expect("converged after healing");
    assert_eq!(converged.0, e.digest);
    assert_eq!(converged.1, w.digest);
    assert_eq!(
        converged.2, w.digest,
        "the later write of `both` (westus) wins everywhere"
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_under_concurrent_push_loses_nothing_referenced() {
    let lab = Lab::start(
        &["eastus", "westus"],
        Opts {
            registry_extra: "[registry.gc]\nenabled = false\ngrace = \"0s\"\n".into(),
            ..Opts::default()
        },
    )
    .await;
    let (east, west) = (lab.client(0), lab.client(1));
    // Garbage to collect: an unlinked blob and a deleted image.
    let junk = east.push_blob("gc/app", b"junk blob").await;
    east.req(Method::DELETE, &format!("/v2/gc/app/blobs/{junk}"))
        .send()
        .await
        .expect("unlink");
    let doomed = image(71, &[5000]);
    east.push_image("gc/doomed", "x", &doomed).await;
    for b in std::iter::once(&doomed.config).chain(doomed.layers.iter()) {
        east.req(
            Method::DELETE,
            &format!("/v2/gc/doomed/blobs/{}", sha256(b)),
        )
        .send()
        .await
        .expect("unlink");
    }
    east.req(
        Method::DELETE,
        &format!("/v2/gc/doomed/manifests/{}", doomed.digest),
    )
    .send()
    .await
    .expect("delete");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gcs: Vec<_> = (0..2)
        .map(|i| {
            let stop = stop.clone();
            let h = lab.handle(i).router();
            let _ = h;
            let c = lab.client(i);
            tokio::spawn(async move {
                let mut deleted = 0u64;
                let mut runs = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let r = c
                        .req(Method::POST, "/_tandem/registry/v1/gc")
                        .send()
                        .await
                        .expect("gc");
                    assert_eq!(r.status(), 200);
                    let v: Value = r.json().await.expect("json");
                    deleted += v["deleted"].as_u64().unwrap_or(0);
                    runs += 1;
                }
                (runs, deleted)
            })
        })
        .collect();
    // Pushes in both regions, sharing layers (the same layer pushed again while GC runs).
    let shared = image(80, &[20_000]).layers[0].clone();
    let mut imgs = Vec::new();
    let mut pushes = Vec::new();
    for i in 0..10u64 {
        let mut img = image(90 + i, &[3000]);
        img.layers.push(shared.clone());
        let img = rebuild(img);
        imgs.push((i, img.digest.clone()));
        let c = if i % 2 == 0 {
            east.clone()
        } else {
            west.clone()
        };
        pushes.push(tokio::spawn(async move {
            c.push_image("gc/app", &format!("v{i}"), &img).await;
            img
        }));
    }
    let mut pushed = Vec::new();
    for p in pushes {
        pushed.push(p.await.expect("push"));
    }
    // Let replication finish while GC keeps running.
    for (i, img) in pushed.iter().enumerate() {
        let t = format!("v{i}");
        for c in [&east, &west] {
            eventually(WAIT, || async { c.tag_digest("gc/app", &t).await })
                .await
                .expect("replicated");
            assert!(pullable(c, "gc/app", &t, img).await, "{t} lost blobs");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut total = 0;
    for g in gcs {
        let (runs, deleted) = g.await.expect("gc task");
        assert!(runs > 0);
        total += deleted;
    }
    assert!(total >= 1, "GC collected the garbage");
    // Still everything there after a final GC on both sides.
    for i in 0..2 {
        lab.handle(i).gc().await.expect("gc");
    }
    for (i, img) in pushed.iter().enumerate() {
        for c in [&east, &west] {
            assert!(pullable(c, "gc/app", &format!("v{i}"), img).await);
        }
    }
    assert_eq!(
        east.get(&format!("/v2/gc/app/blobs/{junk}")).await.status(),
        404
    );
    lab.shutdown().await;
}

/// Recompute an image's manifest after changing its layers.
fn rebuild(img: common::Image) -> common::Image {
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]}}"#,
        sha256(&img.config),
        img.config.len(),
        img.layers
            .iter()
            .map(|l| format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}"#,
                sha256(l),
                l.len()
            ))
            .collect::<Vec<_>>()
            .join(",")
    )
    .into_bytes();
    common::Image {
        digest: sha256(&manifest),
        manifest,
        ..img
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_regions_converge() {
    let lab = Lab::start(&["eastus", "westus", "centralus"], Opts::default()).await;
    let imgs: Vec<_> = (0..3).map(|i| image(200 + i, &[1000])).collect();
    for (i, img) in imgs.iter().enumerate() {
        lab.client(i)
            .push_image("tri/app", &format!("from{i}"), img)
            .await;
    }
    for i in 0..3 {
        let c = lab.client(i);
        for (j, img) in imgs.iter().enumerate() {
            let t = format!("from{j}");
            eventually(WAIT, || async { c.tag_digest("tri/app", &t).await })
                .await
                .expect("replicated");
            assert!(pullable(&c, "tri/app", &t, img).await);
        }
    }
    lab.shutdown().await;
}
