//! The distribution spec's error codes and the JSON body every 4xx carries:
//! `{"errors":[{"code":"…","message":"…","detail":…}]}`.

use http::StatusCode;
use serde::Serialize;

/// An error code from the spec's table (code-1 … code-14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    /// blob unknown to registry
    BlobUnknown,
    /// blob upload invalid
    BlobUploadInvalid,
    /// blob upload unknown to registry
    BlobUploadUnknown,
    /// provided digest did not match uploaded content
    DigestInvalid,
    /// manifest references a manifest or blob unknown to registry
    ManifestBlobUnknown,
    /// manifest invalid
    ManifestInvalid,
    /// manifest unknown to registry
    ManifestUnknown,
    /// invalid repository name
    NameInvalid,
    /// repository name not known to registry
    NameUnknown,
    /// provided length did not match content length
    SizeInvalid,
    /// authentication required
    Unauthorized,
    /// requested access to the resource is denied
    Denied,
    /// the operation is unsupported
    Unsupported,
    /// too many requests
    #[serde(rename = "TOOMANYREQUESTS")]
    TooManyRequests,
    /// Not in the spec's table: a server-side failure (5xx); clients treat it as UNKNOWN.
    Unknown,
}

impl Code {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::Unknown => "UNKNOWN",
        }
    }

    /// The spec's description of the code, used as the default message.
    pub fn description(self) -> &'static str {
        match self {
            Code::BlobUnknown => "blob unknown to registry",
            Code::BlobUploadInvalid => "blob upload invalid",
            Code::BlobUploadUnknown => "blob upload unknown to registry",
            Code::DigestInvalid => "provided digest did not match uploaded content",
            Code::ManifestBlobUnknown => {
                "manifest references a manifest or blob unknown to registry"
            }
            Code::ManifestInvalid => "manifest invalid",
            Code::ManifestUnknown => "manifest unknown to registry",
            Code::NameInvalid => "invalid repository name",
            Code::NameUnknown => "repository name not known to registry",
            Code::SizeInvalid => "provided length did not match content length",
            Code::Unauthorized => "authentication required",
            Code::Denied => "requested access to the resource is denied",
            Code::Unsupported => "the operation is unsupported",
            Code::TooManyRequests => "too many requests",
            Code::Unknown => "unknown error",
        }
    }
}

/// One entry of the `errors` array.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorEntry {
    /// The code.
    pub code: Code,
    /// Human-readable message.
    pub message: String,
    /// Structured detail.
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// An API error: an HTTP status and one or more spec errors.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Errors for the body.
    pub errors: Vec<ErrorEntry>,
    /// Extra headers (e.g. `WWW-Authenticate`, `Range`, `Retry-After`).
    pub headers: Vec<(http::HeaderName, String)>,
}

impl ApiError {
    /// An error with one code and a message.
    pub fn new(status: StatusCode, code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            errors: vec![ErrorEntry {
                code,
                message: message.into(),
                detail: serde_json::Value::Null,
            }],
            headers: Vec::new(),
        }
    }

    /// Attach structured detail to the first error.
    pub fn detail(mut self, detail: serde_json::Value) -> ApiError {
        if let Some(e) = self.errors.first_mut() {
            e.detail = detail;
        }
        self
    }

    /// Add a response header.
    pub fn header(mut self, name: http::HeaderName, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    /// The first code (for metrics and logs).
    pub fn code(&self) -> Option<Code> {
        self.errors.first().map(|e| e.code)
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        #[derive(Serialize)]
        struct Body<'a> {
            errors: &'a [ErrorEntry],
        }
        serde_json::to_string(&Body {
            errors: &self.errors,
        })
        .unwrap_or_else(|_| "{\"errors\":[]}".into())
    }

    /// 404 BLOB_UNKNOWN.
    pub fn blob_unknown(digest: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            Code::BlobUnknown,
            Code::BlobUnknown.description(),
        )
        .detail(serde_json::json!({ "digest": digest }))
    }

    /// 404 MANIFEST_UNKNOWN.
    pub fn manifest_unknown(reference: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            Code::ManifestUnknown,
            Code::ManifestUnknown.description(),
        )
        .detail(serde_json::json!({ "reference": reference }))
    }

    /// 404 NAME_UNKNOWN.
    pub fn name_unknown(name: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            Code::NameUnknown,
            Code::NameUnknown.description(),
        )
        .detail(serde_json::json!({ "name": name }))
    }

    /// 400 NAME_INVALID.
    pub fn name_invalid(name: &str) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::NameInvalid,
            "invalid repository name: components are lower-case letters and digits separated by '.', '_', '__' or '-', joined by '/', under 256 characters",
        )
        .detail(serde_json::json!({ "name": name }))
    }

    /// 400 DIGEST_INVALID.
    pub fn digest_invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, Code::DigestInvalid, message)
    }

    /// 404 BLOB_UPLOAD_UNKNOWN.
    pub fn upload_unknown(id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            Code::BlobUploadUnknown,
            "blob upload unknown to registry: start a new upload with POST /v2/<name>/blobs/uploads/",
        )
        .detail(serde_json::json!({ "upload": id }))
    }

    /// 400 MANIFEST_INVALID.
    pub fn manifest_invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, Code::ManifestInvalid, message)
    }

    /// 405 UNSUPPORTED.
    pub fn unsupported(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, Code::Unsupported, message)
    }

    /// 403 DENIED.
    pub fn denied(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, Code::Denied, message)
    }

    /// 500 UNKNOWN; the message says what failed.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, Code::Unknown, message)
    }

    /// 503 UNKNOWN: a dependency (storage, a peer) is unavailable; retrying later is safe.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, Code::Unknown, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_matches_spec_shape() {
        let e = ApiError::blob_unknown("sha256:00");
        let v: serde_json::Value = serde_json::from_str(&e.body()).expect("json");
        assert_eq!(v["errors"][0]["code"], "BLOB_UNKNOWN");
        assert_eq!(v["errors"][0]["detail"]["digest"], "sha256:00");
        assert_eq!(
            serde_json::to_value(Code::TooManyRequests).expect("json"),
            "TOOMANYREQUESTS"
        );
        for c in [Code::BlobUploadInvalid, Code::ManifestBlobUnknown] {
            assert_eq!(
                serde_json::to_value(c).expect("json").as_str(),
                Some(c.as_str())
            );
        }
    }
}
