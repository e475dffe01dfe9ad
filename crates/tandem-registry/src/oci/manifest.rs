//! Manifests and indexes (OCI and Docker schema 2): what a pushed manifest references, its
//! subject, artifact type and annotations — everything the registry checks or indexes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 2 manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The media types accepted for manifests.
pub const MANIFEST_TYPES: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// Layer media types whose content lives elsewhere (`urls`), so the registry need not hold them.
const FOREIGN_LAYERS: &[&str] = &[
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Artifact type (referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// External URLs (foreign layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<u32>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// What the registry needs to know about a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestInfo {
    /// Its media type.
    pub media_type: String,
    /// Blobs it needs in the same repository (config and distributable layers).
    pub blobs: Vec<Digest>,
    /// Manifests it needs in the same repository (an index's children).
    pub manifests: Vec<Digest>,
    /// The manifest it refers to, if any.
    pub subject: Option<Digest>,
    /// Its artifact type for the referrers API: `artifactType`, else the config's media type
    /// for image manifests, else none.
    pub artifact_type: Option<String>,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
}

impl ManifestInfo {
    /// Whether this is an index (its children are manifests, not blobs).
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or fields of the wrong type.
    #[error("manifest is not valid JSON of a manifest: {0}")]
    Json(String),
    /// Neither the body nor the Content-Type says what it is, or it is a type we do not store.
    #[error(
        "manifest media type {0:?} is not supported; push an OCI or Docker schema 2 manifest or index"
    )]
    MediaType(String),
    /// The `mediaType` field and the Content-Type header differ.
    #[error(
        "manifest mediaType {body:?} does not match Content-Type {header:?}; they must be equal"
    )]
    Mismatch {
        /// From the body.
        body: String,
        /// From the header.
        header: String,
    },
    /// `schemaVersion` is not 2.
    #[error("manifest schemaVersion must be 2")]
    SchemaVersion,
    /// A required field is missing.
    #[error("manifest is missing {0}")]
    Missing(&'static str),
}

/// Parse a manifest body. `content_type` is the request's Content-Type without parameters.
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<ManifestInfo, ManifestError> {
    let raw: RawManifest =
        serde_json::from_slice(body).map_err(|e| ManifestError::Json(e.to_string()))?;
    let header = content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_string());
    let media_type = match (&raw.media_type, &header) {
        (Some(b), Some(h)) if !h.is_empty() && b != h => {
            return Err(ManifestError::Mismatch {
                body: b.clone(),
                header: h.clone(),
            });
        }
        (Some(b), _) => b.clone(),
        (None, Some(h)) if MANIFEST_TYPES.contains(&h.as_str()) => h.clone(),
        // No type anywhere: infer OCI types from the shape, as the image spec allows.
        (None, _) if raw.manifests.is_some() => OCI_INDEX.to_string(),
        (None, _) if raw.config.is_some() => OCI_MANIFEST.to_string(),
        (None, h) => return Err(ManifestError::MediaType(h.clone().unwrap_or_default())),
    };
    if !MANIFEST_TYPES.contains(&media_type.as_str()) {
        return Err(ManifestError::MediaType(media_type));
    }
    if raw.schema_version != Some(2) {
        return Err(ManifestError::SchemaVersion);
    }
    let mut info = ManifestInfo {
        media_type,
        blobs: Vec::new(),
        manifests: Vec::new(),
        subject: raw.subject.map(|s| s.digest),
        artifact_type: raw.artifact_type.filter(|a| !a.is_empty()),
        annotations: raw.annotations.unwrap_or_default(),
    };
    if info.is_index() {
        let children = raw.manifests.ok_or(ManifestError::Missing("`manifests`"))?;
        info.manifests = children.into_iter().map(|d| d.digest).collect();
    } else {
        let config = raw.config.ok_or(ManifestError::Missing("`config`"))?;
        if info.artifact_type.is_none() {
            info.artifact_type = Some(config.media_type.clone());
        }
        info.blobs.push(config.digest);
        for l in raw.layers.ok_or(ManifestError::Missing("`layers`"))? {
            let foreign = FOREIGN_LAYERS.contains(&l.media_type.as_str())
                && l.urls.as_ref().is_some_and(|u| !u.is_empty());
            if !foreign {
                info.blobs.push(l.digest);
            }
        }
    }
    info.blobs.sort();
    info.blobs.dedup();
    info.manifests.sort();
    info.manifests.dedup();
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> String {
        Digest::sha256_of(s.as_bytes()).to_string()
    }

    #[test]
    fn image_manifest() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":3}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":4}},"annotations":{{"a":"b"}}}}"#,
            d("c"),
            d("l"),
            d("s")
        );
        let m = parse(body.as_bytes(), Some(OCI_MANIFEST)).expect("valid");
        assert_eq!(m.blobs.len(), 2);
        assert_eq!(m.subject.as_ref().map(|s| s.to_string()), Some(d("s")));
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert!(matches!(
            parse(body.as_bytes(), Some(OCI_INDEX)),
            Err(ManifestError::Mismatch { .. })
        ));
    }

    #[test]
    fn refuses_garbage() {
        assert!(matches!(parse(b"nope", None), Err(ManifestError::Json(_))));
        assert!(matches!(
            parse(br#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+json"}"#, None),
            Err(ManifestError::MediaType(_))
        ));
        let idx = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}"}}"#);
        assert!(matches!(
            parse(idx.as_bytes(), None),
            Err(ManifestError::Missing(_))
        ));
    }
}
