//! A real S3 endpoint on loopback for tests of the object-store backends: `s3s-fs` (the S3
//! REST API over a local directory, with SigV4 authentication) served by hyper. Tests point
//! `object_store`'s S3 client at it with `aws_endpoint` and `aws_allow_http`, so the code path
//! is the one a real bucket takes: signed requests, multipart uploads, listings, errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Request, S3Response, S3Result};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// s3s-fs with one fix: an empty `delimiter=` (what Go's minio client, and so restic, sends
/// for a recursive listing) means no delimiter, as it does on S3. s3s-fs treats it as a
/// delimiter and lists nothing below the first level.
struct Fs(s3s_fs::FileSystem);

macro_rules! s3_delegating_to_fs {
    ($($name:ident: $input:ident => $output:ident),* $(,)?) => {
        #[async_trait::async_trait]
        impl S3 for Fs {
            $(
                async fn $name(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.0.$name(req).await
                }
            )*

            async fn list_objects(
                &self,
                mut req: S3Request<ListObjectsInput>,
            ) -> S3Result<S3Response<ListObjectsOutput>> {
                if req.input.delimiter.as_deref() == Some("") {
                    req.input.delimiter = None;
                }
                self.0.list_objects(req).await
            }

            async fn list_objects_v2(
                &self,
                mut req: S3Request<ListObjectsV2Input>,
            ) -> S3Result<S3Response<ListObjectsV2Output>> {
                if req.input.delimiter.as_deref() == Some("") {
                    req.input.delimiter = None;
                }
                self.0.list_objects_v2(req).await
            }
        }
    };
}

s3_delegating_to_fs! {
    create_bucket: CreateBucketInput => CreateBucketOutput,
    copy_object: CopyObjectInput => CopyObjectOutput,
    delete_bucket: DeleteBucketInput => DeleteBucketOutput,
    delete_object: DeleteObjectInput => DeleteObjectOutput,
    delete_objects: DeleteObjectsInput => DeleteObjectsOutput,
    get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput,
    get_object: GetObjectInput => GetObjectOutput,
    head_bucket: HeadBucketInput => HeadBucketOutput,
    head_object: HeadObjectInput => HeadObjectOutput,
    list_buckets: ListBucketsInput => ListBucketsOutput,
    put_object: PutObjectInput => PutObjectOutput,
    create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput,
    upload_part: UploadPartInput => UploadPartOutput,
    upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput,
    list_parts: ListPartsInput => ListPartsOutput,
    complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput,
    abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput,
}

/// The access key the fixture accepts.
pub const ACCESS_KEY: &str = "tandem-test-access";
/// The secret key the fixture accepts.
pub const SECRET_KEY: &str = "tandem-test-secret-key";
/// The region name the fixture's clients sign for.
pub const REGION: &str = "us-east-1";

/// A running S3 endpoint; stops when dropped.
pub struct S3Server {
    pub addr: SocketAddr,
    pub root: PathBuf,
    stop: CancellationToken,
}

impl S3Server {
    /// Serve `root` (each subdirectory is a bucket) on a free loopback port.
    pub async fn start(root: &Path) -> S3Server {
        std::fs::create_dir_all(root).unwrap();
        let fs = Fs(s3s_fs::FileSystem::new(root).unwrap());
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = b.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let sock = tokio::select! {
                    r = listener.accept() => match r {
                        Ok((sock, _)) => sock,
                        Err(_) => continue,
                    },
                    () = s.cancelled() => return,
                };
                let conn = http
                    .serve_connection(TokioIo::new(sock), service.clone())
                    .into_owned();
                let s = s.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = conn => {}
                        () = s.cancelled() => {}
                    }
                });
            }
        });
        S3Server {
            addr,
            root: root.to_path_buf(),
            stop,
        }
    }

    /// Create a bucket (a directory under the root).
    pub fn bucket(&self, name: &str) {
        std::fs::create_dir_all(self.root.join(name)).unwrap();
    }

    /// The endpoint URL for `aws_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `object_store` options that reach this endpoint.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("aws_endpoint", self.endpoint()),
            ("aws_allow_http", "true".into()),
            ("aws_access_key_id", ACCESS_KEY.into()),
            ("aws_secret_access_key", SECRET_KEY.into()),
            ("aws_region", REGION.into()),
        ]
    }

    /// The same options as a TOML inline table, for `storage_options = ...` or
    /// `repository_options = ...` in a test's config.
    pub fn toml_options(&self) -> String {
        let kv: Vec<String> = self
            .options()
            .into_iter()
            .map(|(k, v)| format!("{k} = \"{v}\""))
            .collect();
        format!("{{ {} }}", kv.join(", "))
    }

    /// Stop serving (also on drop).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
