//! The OCI Distribution Specification v1.1 walked endpoint by endpoint (end-1 … end-14) and
//! error code by error code (code-1 … code-14) against a running replica, from the spec text.

mod common;

use common::{Client, Lab, Opts, image, sha256};
use reqwest::Method;
use serde_json::Value;

async fn err_code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        v["errors"][0]["code"]
            .as_str()
            .unwrap_or("<none>")
            .to_string(),
    )
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_1_base_and_auth_challenges() {
    let lab = Lab::start(&["eastus"], Opts::default()).await;
    let anon = lab.anon(0);
    // end-1 without credentials: 401, a challenge and the API version header.
    let r = anon.get("/v2/").await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        "registry/2.0"
    );
    assert!(header(&r, "www-authenticate").starts_with("Basic"));
    assert_eq!(err_code(r).await.1, "UNAUTHORIZED");
    // With credentials: 200.
    let c = lab.client(0);
    let r = c.get("/v2/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        "registry/2.0"
    );
    // Wrong password: 401.
    let bad = Client::new(&lab.url(0), Some(("ci", "wrong")));
    assert_eq!(bad.get("/v2/").await.status(), 401);
    // An account without push rights is DENIED (403), not UNAUTHORIZED.
    let reader = Client::new(&lab.url(0), Some(("reader", common::PASSWORD)));
    let r = reader
        .req(Method::POST, "/v2/team/app/blobs/uploads/")
        .send()
        .await
        .expect("post");
    assert_eq!(err_code(r).await, (403, "DENIED".into()));
    // Anonymous pulls are allowed for public/*, refused elsewhere with a scoped challenge.
    c.push_image("public/hello", "v1", &image(1, &[100])).await;
    c.push_image("private/hello", "v1", &image(2, &[100])).await;
    assert_eq!(
        anon.get("/v2/public/hello/manifests/v1").await.status(),
        200
    );
    let r = anon.get("/v2/private/hello/manifests/v1").await;
    assert_eq!(r.status(), 401);
    assert!(header(&r, "www-authenticate").contains("Basic"));
    // Anonymous push is refused.
    let r = anon
        .req(Method::POST, "/v2/public/hello/blobs/uploads/")
        .send()
        .await
        .expect("post");
    assert_eq!(err_code(r).await, (401, "UNAUTHORIZED".into()));
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_token_flow() {
    let lab = Lab::start(
        &["eastus"],
        Opts {
            registry_extra:
                "[registry.token]\nkey = \"0123456789abcdef0123456789abcdef-token-key\"\n".into(),
            ..Opts::default()
        },
    )
    .await;
    let anon = lab.anon(0);
    let r = anon.get("/v2/team/app/manifests/v1").await;
    assert_eq!(r.status(), 401);
    let ch = header(&r, "www-authenticate");
    assert!(ch.starts_with("Bearer realm=\""), "{ch}");
    assert!(ch.contains("service=\"tandem-registry\""), "{ch}");
    assert!(ch.contains("scope=\"repository:team/app:pull\""), "{ch}");
    // Log in at the realm with Basic credentials, ask for push.
    let c = lab.client(0);
    let r = c
        .get("/token?service=tandem-registry&scope=repository:team/app:pull,push")
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    let token = v["token"].as_str().expect("token").to_string();
    assert_eq!(v["access_token"], v["token"]);
    let mut bearer = Client::new(&lab.url(0), None);
    bearer.auth = Some(format!("Bearer {token}"));
    bearer.push_image("team/app", "v1", &image(3, &[10])).await;
    // The token covers team/app only.
    let r = bearer
        .req(Method::POST, "/v2/team/other/blobs/uploads/")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    // Anonymous token: pull on public/* only.
    let r = anon
        .get("/token?service=tandem-registry&scope=repository:public/x:pull,push")
        .await;
    let v: Value = r.json().await.expect("json");
    let claims = v["token"]
        .as_str()
        .expect("token")
        .split('.')
        .nth(1)
        .expect("claims")
        .to_string();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims)
            .expect("b64"),
    )
    .expect("claims json");
    assert_eq!(claims["access"][0]["actions"], serde_json::json!(["pull"]));
    // Bad credentials at the token endpoint: 401.
    let bad = Client::new(&lab.url(0), Some(("ci", "nope")));
    assert_eq!(
        bad.get("/token?scope=repository:a:pull").await.status(),
        401
    );
    // A forged token is refused.
    let mut forged = Client::new(&lab.url(0), None);
    forged.auth = Some(format!("Bearer {token}x"));
    assert_eq!(forged.get("/v2/team/app/manifests/v1").await.status(), 401);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_uploads_and_their_errors() {
    let lab = Lab::start(&["eastus"], Opts::default()).await;
    let c = lab.client(0);
    let repo = "conf/blobs";
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let d = sha256(&data);

    // end-4a + end-13 + end-5 + end-6: chunked upload.
    let r = c
        .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
        .header("content-length", "0")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 202);
    let loc = header(&r, "location");
    assert!(loc.contains("/blobs/uploads/"), "{loc}");
    assert!(!header(&r, "docker-upload-uuid").is_empty());
    let r = c.req(Method::GET, &loc).send().await.expect("status");
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range"), "0-0");
    let (a, b) = data.split_at(100_000);
    let r = c
        .req(Method::PATCH, &loc)
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("0-{}", a.len() - 1))
        .body(a.to_vec())
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), format!("0-{}", a.len() - 1));
    let loc = header(&r, "location");
    // Out of order: 416 with BLOB_UPLOAD_INVALID, and the offset.
    let r = c
        .req(Method::PATCH, &loc)
        .header("content-range", "5-9")
        .body(vec![0u8; 5])
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "range"), format!("0-{}", a.len() - 1));
    assert_eq!(err_code(r).await.1, "BLOB_UPLOAD_INVALID");
    // Content-Range and Content-Length disagree: SIZE_INVALID.
    let r = c
        .req(Method::PATCH, &loc)
        .header("content-range", format!("{}-{}", a.len(), a.len() + 9))
        .body(vec![0u8; 5])
        .send()
        .await
        .expect("patch");
    assert_eq!(err_code(r).await, (400, "SIZE_INVALID".into()));
    // Resume: GET says where we are.
    let r = c.req(Method::GET, &loc).send().await.expect("status");
    assert_eq!(header(&r, "range"), format!("0-{}", a.len() - 1));
    // Final chunk in the closing PUT.
    let r = c
        .req(Method::PUT, &format!("{loc}?digest={d}"))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("{}-{}", a.len(), data.len() - 1))
        .body(b.to_vec())
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    // The session is closed now: BLOB_UPLOAD_UNKNOWN.
    let r = c.req(Method::GET, &loc).send().await.expect("status");
    assert_eq!(err_code(r).await, (404, "BLOB_UPLOAD_UNKNOWN".into()));

    // end-2: GET, HEAD, Range.
    let r = c.get(&format!("/v2/{repo}/blobs/{d}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), d);
    assert_eq!(r.bytes().await.expect("body").as_ref(), data.as_slice());
    let r = c
        .req(Method::HEAD, &format!("/v2/{repo}/blobs/{d}"))
        .send()
        .await
        .expect("head");
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), data.len().to_string());
    assert_eq!(header(&r, "docker-content-digest"), d);
    let r = c
        .req(Method::GET, &format!("/v2/{repo}/blobs/{d}"))
        .header("range", "bytes=10-19")
        .send()
        .await
        .expect("range");
    assert_eq!(r.status(), 206);
    assert_eq!(
        header(&r, "content-range"),
        format!("bytes 10-19/{}", data.len())
    );
    assert_eq!(r.bytes().await.expect("body").as_ref(), &data[10..20]);
    let r = c
        .req(Method::GET, &format!("/v2/{repo}/blobs/{d}"))
        .header("range", format!("bytes={}-", data.len()))
        .send()
        .await
        .expect("range");
    assert_eq!(r.status(), 416);
    // code-1 BLOB_UNKNOWN.
    let unknown = sha256(b"nothing");
    let r = c.get(&format!("/v2/{repo}/blobs/{unknown}")).await;
    assert_eq!(err_code(r).await, (404, "BLOB_UNKNOWN".into()));
    let r = c
        .req(Method::HEAD, &format!("/v2/{repo}/blobs/{unknown}"))
        .send()
        .await
        .expect("head");
    assert_eq!(r.status(), 404);
    // code-4 DIGEST_INVALID on a malformed digest.
    let r = c.get(&format!("/v2/{repo}/blobs/sha256:xyz")).await;
    assert_eq!(err_code(r).await, (400, "DIGEST_INVALID".into()));

    // end-4b: single-POST monolithic upload; a wrong digest is DIGEST_INVALID and leaves nothing.
    let small = b"monolithic blob".to_vec();
    c.push_blob(repo, &small).await;
    let wrong = sha256(b"something else");
    let r = c
        .req(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={wrong}"),
        )
        .body(small.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(err_code(r).await, (400, "DIGEST_INVALID".into()));
    assert_eq!(
        c.get(&format!("/v2/{repo}/blobs/{wrong}")).await.status(),
        404
    );
    // POST then PUT (monolithic in the PUT).
    let r = c
        .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .expect("post");
    let loc = header(&r, "location");
    let mono = b"post then put".to_vec();
    let r = c
        .req(Method::PUT, &format!("{loc}?digest={}", sha256(&mono)))
        .body(mono.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 201);
    assert_eq!(
        header(&r, "location"),
        format!("/v2/{repo}/blobs/{}", sha256(&mono))
    );
    // PUT without ?digest is DIGEST_INVALID.
    let r = c
        .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .expect("post");
    let loc = header(&r, "location");
    let r = c
        .req(Method::PUT, &loc)
        .body(vec![1u8])
        .send()
        .await
        .expect("put");
    assert_eq!(err_code(r).await, (400, "DIGEST_INVALID".into()));

    // Streamed upload: one PATCH with a chunked body and no Content-Range.
    let r = c
        .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .expect("post");
    let loc = header(&r, "location");
    let streamed: Vec<u8> = (0..2_000_000u32).map(|i| (i % 13) as u8).collect();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        streamed.chunks(65_536).map(|c| Ok(c.to_vec())).collect();
    let r = c
        .req(Method::PATCH, &loc)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), format!("0-{}", streamed.len() - 1));
    let loc = header(&r, "location");
    let r = c
        .req(Method::PUT, &format!("{loc}?digest={}", sha256(&streamed)))
        .header("content-length", "0")
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 201);

    // sha512 digests are verified too.
    let d512 = format!(
        "sha512:{}",
        hex::encode(<sha2::Sha512 as sha2::Digest>::digest(&small))
    );
    let r = c
        .req(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={d512}"),
        )
        .body(small.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 201);
    let r = c.get(&format!("/v2/{repo}/blobs/{d512}")).await;
    assert_eq!(r.bytes().await.expect("b").as_ref(), small.as_slice());

    // end-14: cancel an upload; it is unknown afterwards.
    let r = c
        .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .expect("post");
    let loc = header(&r, "location");
    let r = c.req(Method::DELETE, &loc).send().await.expect("delete");
    assert_eq!(r.status(), 204);
    let r = c
        .req(Method::PATCH, &loc)
        .body(vec![1u8])
        .send()
        .await
        .expect("patch");
    assert_eq!(err_code(r).await, (404, "BLOB_UPLOAD_UNKNOWN".into()));
    // An upload id of another repository is unknown here.
    let r = c
        .req(Method::POST, "/v2/conf/other/blobs/uploads/")
        .send()
        .await
        .expect("post");
    let id = header(&r, "docker-upload-uuid");
    let r = c
        .req(Method::GET, &format!("/v2/{repo}/blobs/uploads/{id}"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);

    // end-11: mount from a repository that has it (201), from one that does not (202).
    let r = c
        .req(
            Method::POST,
            &format!("/v2/conf/mounted/blobs/uploads/?mount={d}&from={repo}"),
        )
        .send()
        .await
        .expect("mount");
    assert_eq!(r.status(), 201);
    assert_eq!(
        header(&r, "location"),
        format!("/v2/conf/mounted/blobs/{d}")
    );
    assert_eq!(
        c.get(&format!("/v2/conf/mounted/blobs/{d}")).await.status(),
        200
    );
    let r = c
        .req(
            Method::POST,
            &format!("/v2/conf/mounted2/blobs/uploads/?mount={d}&from=conf/nothing"),
        )
        .send()
        .await
        .expect("mount");
    assert_eq!(r.status(), 202);

    // end-10: delete a blob; then it is unknown. Deleting it again is BLOB_UNKNOWN.
    let r = c
        .req(Method::DELETE, &format!("/v2/conf/mounted/blobs/{d}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 202);
    assert_eq!(
        c.get(&format!("/v2/conf/mounted/blobs/{d}")).await.status(),
        404
    );
    let r = c
        .req(Method::DELETE, &format!("/v2/conf/mounted/blobs/{d}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(err_code(r).await, (404, "BLOB_UNKNOWN".into()));
    // ...but the other repository still has it.
    assert_eq!(c.get(&format!("/v2/{repo}/blobs/{d}")).await.status(), 200);

    // code-8 NAME_INVALID.
    let r = c
        .req(Method::POST, "/v2/Bad_Name/blobs/uploads/")
        .send()
        .await
        .expect("post");
    assert_eq!(err_code(r).await, (400, "NAME_INVALID".into()));
    let r = c.get("/v2/a//b/blobs/sha256:00").await;
    assert_eq!(r.status(), 400);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_tags_referrers_deletes() {
    let lab = Lab::start(&["eastus"], Opts::default()).await;
    let c = lab.client(0);
    let repo = "conf/manifests";
    let img = image(7, &[1000, 2000]);
    // code-5 MANIFEST_BLOB_UNKNOWN: blobs not pushed yet.
    let r = c
        .put_manifest(
            repo,
            "v1",
            "application/vnd.oci.image.manifest.v1+json",
            &img.manifest,
        )
        .await;
    let (s, code) = err_code(r).await;
    assert_eq!((s, code.as_str()), (400, "MANIFEST_BLOB_UNKNOWN"));
    assert_eq!(
        c.get(&format!("/v2/{repo}/manifests/v1")).await.status(),
        404,
        "nothing half-written"
    );
    // end-7 by tag.
    c.push_blob(repo, &img.config).await;
    for l in &img.layers {
        c.push_blob(repo, l).await;
    }
    let r = c
        .put_manifest(
            repo,
            "v1",
            "application/vnd.oci.image.manifest.v1+json",
            &img.manifest,
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "docker-content-digest"), img.digest);
    assert_eq!(
        header(&r, "location"),
        format!("/v2/{repo}/manifests/{}", img.digest)
    );
    // end-3 by tag and digest, GET and HEAD; bytes as pushed.
    for reference in ["v1", img.digest.as_str()] {
        let r = c.get(&format!("/v2/{repo}/manifests/{reference}")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            header(&r, "content-type"),
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(header(&r, "docker-content-digest"), img.digest);
        assert_eq!(
            r.bytes().await.expect("b").as_ref(),
            img.manifest.as_slice()
        );
        let r = c
            .req(Method::HEAD, &format!("/v2/{repo}/manifests/{reference}"))
            .send()
            .await
            .expect("head");
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-length"), img.manifest.len().to_string());
    }
    // end-7 by digest; a digest that does not match is DIGEST_INVALID.
    let r = c
        .put_manifest(
            repo,
            &img.digest,
            "application/vnd.oci.image.manifest.v1+json",
            &img.manifest,
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = c
        .put_manifest(
            repo,
            &sha256(b"x"),
            "application/vnd.oci.image.manifest.v1+json",
            &img.manifest,
        )
        .await;
    assert_eq!(err_code(r).await, (400, "DIGEST_INVALID".into()));
    // code-6 MANIFEST_INVALID: not JSON; Content-Type disagrees with mediaType; bad tag.
    let r = c
        .put_manifest(
            repo,
            "bad",
            "application/vnd.oci.image.manifest.v1+json",
            b"not json",
        )
        .await;
    assert_eq!(err_code(r).await, (400, "MANIFEST_INVALID".into()));
    let r = c
        .put_manifest(
            repo,
            "bad",
            "application/vnd.oci.image.index.v1+json",
            &img.manifest,
        )
        .await;
    assert_eq!(err_code(r).await, (400, "MANIFEST_INVALID".into()));
    let r = c
        .put_manifest(
            repo,
            ".bad",
            "application/vnd.oci.image.manifest.v1+json",
            &img.manifest,
        )
        .await;
    assert_eq!(r.status(), 400);
    // 413 for a manifest over the limit (4 MiB by default).
    let big = vec![b' '; 4 * 1024 * 1024 + 1];
    let r = c
        .put_manifest(
            repo,
            "big",
            "application/vnd.oci.image.manifest.v1+json",
            &big,
        )
        .await;
    assert_eq!(r.status(), 413);
    // code-7 MANIFEST_UNKNOWN.
    let r = c.get(&format!("/v2/{repo}/manifests/nope")).await;
    assert_eq!(err_code(r).await, (404, "MANIFEST_UNKNOWN".into()));
    // Docker schema 2 manifest and an index over both.
    let docker = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{}","size":{}}},"layers":[]}}"#,
        sha256(&img.config),
        img.config.len()
    );
    let r = c
        .put_manifest(
            repo,
            "docker",
            "application/vnd.docker.distribution.manifest.v2+json",
            docker.as_bytes(),
        )
        .await;
    assert_eq!(r.status(), 201);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{}}}]}}"#,
        img.digest,
        img.manifest.len()
    );
    let r = c
        .put_manifest(
            repo,
            "index",
            "application/vnd.oci.image.index.v1+json",
            index.as_bytes(),
        )
        .await;
    assert_eq!(r.status(), 201);
    let bad_index = index.replace(&img.digest, &sha256(b"missing"));
    let r = c
        .put_manifest(
            repo,
            "badindex",
            "application/vnd.oci.image.index.v1+json",
            bad_index.as_bytes(),
        )
        .await;
    assert_eq!(err_code(r).await, (400, "MANIFEST_BLOB_UNKNOWN".into()));

    // end-8a/8b: tags, sorted, paginated with Link.
    for t in ["b", "a", "c", "d"] {
        assert_eq!(
            c.put_manifest(
                repo,
                t,
                "application/vnd.oci.image.manifest.v1+json",
                &img.manifest
            )
            .await
            .status(),
            201
        );
    }
    let r = c.get(&format!("/v2/{repo}/tags/list")).await;
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["name"], repo);
    assert_eq!(
        v["tags"],
        serde_json::json!(["a", "b", "c", "d", "docker", "index", "v1"])
    );
    let r = c.get(&format!("/v2/{repo}/tags/list?n=2")).await;
    assert!(header(&r, "link").contains(&format!("/v2/{repo}/tags/list?n=2&last=b")));
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["tags"], serde_json::json!(["a", "b"]));
    let r = c.get(&format!("/v2/{repo}/tags/list?n=3&last=b")).await;
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["tags"], serde_json::json!(["c", "d", "docker"]));
    let r = c.get(&format!("/v2/{repo}/tags/list?last=docker")).await;
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["tags"], serde_json::json!(["index", "v1"]));
    let r = c.get(&format!("/v2/{repo}/tags/list?n=0")).await;
    assert!(header(&r, "link").is_empty());
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["tags"], serde_json::json!([]));
    // code-9 NAME_UNKNOWN.
    let r = c.get("/v2/conf/never/tags/list").await;
    assert_eq!(err_code(r).await, (404, "NAME_UNKNOWN".into()));
    // Catalog with pagination.
    c.push_blob("conf/second", b"second repository").await;
    let r = c.get("/v2/_catalog").await;
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        v["repositories"],
        serde_json::json!(["conf/manifests", "conf/second"])
    );
    let r = c.get("/v2/_catalog?n=1").await;
    assert!(header(&r, "link").contains("/v2/_catalog?n=1&last="));
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["repositories"].as_array().map(|a| a.len()), Some(1));

    // end-12a/12b: referrers with subject, artifactType, annotations and the filter.
    let empty = b"{}".to_vec();
    c.push_blob(repo, &empty).await;
    let sbom = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.sbom.v1","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{}","size":2}},"layers":[],"subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{}}},"annotations":{{"org.example.format":"json"}}}}"#,
        sha256(&empty),
        img.digest,
        img.manifest.len()
    );
    let r = c
        .put_manifest(
            repo,
            &sha256(sbom.as_bytes()),
            "application/vnd.oci.image.manifest.v1+json",
            sbom.as_bytes(),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "oci-subject"), img.digest);
    let sig = sbom.replace(
        "application/vnd.example.sbom.v1",
        "application/vnd.example.sig.v1",
    );
    let r = c
        .put_manifest(
            repo,
            &sha256(sig.as_bytes()),
            "application/vnd.oci.image.manifest.v1+json",
            sig.as_bytes(),
        )
        .await;
    assert_eq!(r.status(), 201);
    // A subject that does not exist yet is accepted.
    let orphan = sbom.replace(&img.digest, &sha256(b"future subject"));
    let r = c
        .put_manifest(
            repo,
            &sha256(orphan.as_bytes()),
            "application/vnd.oci.image.manifest.v1+json",
            orphan.as_bytes(),
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = c.get(&format!("/v2/{repo}/referrers/{}", img.digest)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-type"),
        "application/vnd.oci.image.index.v1+json"
    );
    assert!(header(&r, "oci-filters-applied").is_empty());
    let v: Value = r.json().await.expect("json");
    let list = v["manifests"].as_array().expect("manifests");
    assert_eq!(list.len(), 2);
    assert!(
        list.iter()
            .any(|m| m["artifactType"] == "application/vnd.example.sbom.v1"
                && m["annotations"]["org.example.format"] == "json"
                && m["digest"] == sha256(sbom.as_bytes()))
    );
    let r = c
        .get(&format!(
            "/v2/{repo}/referrers/{}?artifactType=application/vnd.example.sig.v1",
            img.digest
        ))
        .await;
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["manifests"].as_array().map(|a| a.len()), Some(1));
    // No referrers: an empty index, not 404. A bad digest: 400.
    let r = c
        .get(&format!("/v2/{repo}/referrers/{}", sha256(b"none")))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["manifests"], serde_json::json!([]));
    assert_eq!(
        c.get(&format!("/v2/{repo}/referrers/sha256:bad"))
            .await
            .status(),
        400
    );

    // end-9: delete a tag; delete a manifest by digest (its tags go with it).
    let r = c
        .req(Method::DELETE, &format!("/v2/{repo}/manifests/a"))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 202);
    assert_eq!(
        c.get(&format!("/v2/{repo}/manifests/a")).await.status(),
        404
    );
    assert_eq!(
        c.get(&format!("/v2/{repo}/manifests/b")).await.status(),
        200
    );
    let r = c
        .req(
            Method::DELETE,
            &format!("/v2/{repo}/manifests/{}", sha256(sig.as_bytes())),
        )
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 202);
    let v: Value = c
        .get(&format!("/v2/{repo}/referrers/{}", img.digest))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        v["manifests"].as_array().map(|a| a.len()),
        Some(1),
        "deleted referrer is gone"
    );
    let r = c
        .req(
            Method::DELETE,
            &format!("/v2/{repo}/manifests/{}", img.digest),
        )
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 202);
    for t in ["b", "c", "v1", img.digest.as_str()] {
        assert_eq!(
            c.get(&format!("/v2/{repo}/manifests/{t}")).await.status(),
            404,
            "{t}"
        );
    }
    let r = c
        .req(
            Method::DELETE,
            &format!("/v2/{repo}/manifests/{}", img.digest),
        )
        .send()
        .await
        .expect("delete");
    assert_eq!(err_code(r).await, (404, "MANIFEST_UNKNOWN".into()));
    // code-13 UNSUPPORTED: a method the endpoint does not have.
    let r = c
        .req(Method::POST, &format!("/v2/{repo}/manifests/x"))
        .send()
        .await
        .expect("post");
    assert_eq!(err_code(r).await, (405, "UNSUPPORTED".into()));
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_disabled_and_too_many_requests() {
    let lab = Lab::start(
        &["eastus"],
        Opts {
            registry_extra: "deletes = false\n[registry.limits]\nmax_concurrent_uploads = 1\n"
                .into(),
            ..Opts::default()
        },
    )
    .await;
    let c = lab.client(0);
    c.push_image("conf/nodelete", "v1", &image(9, &[10])).await;
    let r = c
        .req(Method::DELETE, "/v2/conf/nodelete/manifests/v1")
        .send()
        .await
        .expect("delete");
    assert_eq!(err_code(r).await, (405, "UNSUPPORTED".into()));
    // code-14 TOOMANYREQUESTS: one upload body streams, the second is refused.
    let r = c
        .req(Method::POST, "/v2/conf/slow/blobs/uploads/")
        .send()
        .await
        .expect("post");
    let loc = header(&r, "location");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let c2 = c.clone();
    let loc2 = loc.clone();
    let slow = tokio::spawn(async move {
        c2.req(Method::PATCH, &loc2)
            .body(reqwest::Body::wrap_stream(
                tokio_stream::wrappers::ReceiverStream::new(rx),
            ))
            .send()
            .await
    });
    tx.send(Ok(vec![1u8; 10])).await.expect("send");
    // Wait until the first body is being streamed (it holds the only upload slot).
    common::eventually(std::time::Duration::from_secs(10), || {
        let c = c.clone();
        async move {
            let m = c.get("/metrics").await.text().await.ok()?;
            m.contains("tandem_registry_uploads_in_progress 1")
                .then_some(())
        }
    })
    .await
    .expect("first upload streaming");
    let r = c
        .req(Method::POST, "/v2/conf/other/blobs/uploads/")
        .send()
        .await
        .expect("post");
    let loc_b = header(&r, "location");
    let busy = common::eventually(std::time::Duration::from_secs(5), || {
        let c = c.clone();
        let loc_b = loc_b.clone();
        async move {
            let r = c
                .req(Method::PATCH, &loc_b)
                .body(vec![1u8])
                .send()
                .await
                .ok()?;
            (r.status() == 429).then_some(r)
        }
    })
    .await
    .expect("second upload refused while the first streams");
    assert!(!header(&busy, "retry-after").is_empty());
    assert_eq!(err_code(busy).await.1, "TOOMANYREQUESTS");
    drop(tx);
    let r = slow.await.expect("join").expect("patch");
    assert_eq!(r.status(), 202);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_resume_after_restart() {
    let mut lab = Lab::start(&["eastus"], Opts::default()).await;
    let c = lab.client(0);
    let data: Vec<u8> = (0..500_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let r = c
        .req(Method::POST, "/v2/conf/resume/blobs/uploads/")
        .send()
        .await
        .expect("post");
    let loc = header(&r, "location");
    let r = c
        .req(Method::PATCH, &loc)
        .header("content-range", "0-199999")
        .body(data[..200_000].to_vec())
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 202);
    lab.stop(0).await;
    lab.restart(0).await;
    let c = lab.client(0);
    let r = c.req(Method::GET, &loc).send().await.expect("status");
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range"), "0-199999");
    let r = c
        .req(Method::PUT, &format!("{loc}?digest={}", sha256(&data)))
        .header("content-range", "200000-499999")
        .body(data[200_000..].to_vec())
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let got = c
        .get(&format!("/v2/conf/resume/blobs/{}", sha256(&data)))
        .await
        .bytes()
        .await
        .expect("b");
    assert_eq!(got.as_ref(), data.as_slice());
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_status_endpoints() {
    let lab = Lab::start(&["eastus"], Opts::default()).await;
    let c = lab.client(0);
    c.push_image("conf/metrics", "v1", &image(11, &[10])).await;
    let text = c.get("/metrics").await.text().await.expect("text");
    assert!(text.contains("tandem_registry_requests_total{"), "{text}");
    assert!(text.contains("route=\"manifest\""), "{text}");
    let v: Value = c
        .get("/_tandem/registry/v1/status")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["region"], "eastus");
    assert!(v["head"].as_u64().unwrap_or(0) >= 3);
    let v: Value = c
        .get("/_tandem/registry/v1/status?repository=conf/metrics")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["tags"][0]["tag"], "v1");
    assert_eq!(
        lab.anon(0)
            .get("/_tandem/registry/v1/status")
            .await
            .status(),
        401
    );
    // Replication endpoints need the replication secret.
    assert_eq!(
        c.get("/_tandem/registry/v1/changes?since=0").await.status(),
        401
    );
    lab.shutdown().await;
}
