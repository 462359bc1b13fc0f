//! The object store a lake lives in, built from the pipeline's `lake` section.
//!
//! `file:///dir` maps to the local file system (the embedded default; see
//! [`super::local`]) and `s3://bucket/prefix` to S3 or an S3-compatible
//! server. Either way the result is an [`ObjectStore`] rooted at the lake
//! URI, so table code never sees where it runs. Commits rely on
//! `PutMode::Create` (put-if-absent): on S3 that is a conditional PUT with
//! `If-None-Match: *`, which AWS S3 and the servers the project tests
//! against honour.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::prefix::PrefixStore;

use crate::config::model::LakeConfig;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("lake.uri is not a valid URI: {0}")]
    Uri(#[from] url::ParseError),
    #[error("lake.uri scheme `{0}` is not supported; use file:// or s3://")]
    Scheme(String),
    #[error("lake.uri names no S3 bucket")]
    NoBucket,
    #[error("cannot create the lake directory {path}: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the object store")]
    Open(#[source] object_store::Error),
}

/// Opens the store at `lake.uri`. A local directory is created if missing.
pub fn open(lake: &LakeConfig) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let uri = url::Url::parse(&lake.uri)?;
    match uri.scheme() {
        "file" => {
            let path = uri.path().to_string();
            std::fs::create_dir_all(&path).map_err(|source| StoreError::CreateDir {
                path: path.clone(),
                source,
            })?;
            let fs = super::local::LocalLake::new(std::path::Path::new(&path))
                .map_err(StoreError::Open)?;
            Ok(Arc::new(fs))
        }
        "s3" => {
            let bucket = uri
                .host_str()
                .filter(|b| !b.is_empty())
                .ok_or(StoreError::NoBucket)?;
            // Put-if-absent is what makes commits atomic: never let the
            // environment (`AWS_CONDITIONAL_PUT=disabled`) turn it off.
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_conditional_put(S3ConditionalPut::ETagMatch);
            if let Some(s3) = &lake.s3 {
                // Client options replace every client setting, `allow_http`
                // included: set them before the endpoint.
                builder =
                    builder.with_client_options(object_store::ClientOptions::new().with_timeout(
                        std::time::Duration::from_secs(u64::from(s3.request_timeout_secs)),
                    ));
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                if let Some(region) = &s3.region {
                    builder = builder.with_region(region);
                }
                if let Some(key) = &s3.access_key_id {
                    builder = builder.with_access_key_id(key);
                }
                if let Some(secret) = &s3.secret_access_key {
                    builder = builder.with_secret_access_key(secret.expose());
                }
                if let Some(token) = &s3.session_token {
                    builder = builder.with_token(token.expose());
                }
                builder = builder.with_virtual_hosted_style_request(s3.virtual_hosted_style);
            }
            let store = builder.build().map_err(StoreError::Open)?;
            let prefix = uri.path().trim_matches('/');
            if prefix.is_empty() {
                Ok(Arc::new(store))
            } else {
                Ok(Arc::new(PrefixStore::new(store, prefix)))
            }
        }
        other => Err(StoreError::Scheme(other.to_string())),
    }
}
