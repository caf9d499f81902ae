//! Where the archive lives: a local directory (files written under a temporary name,
//! fsynced and renamed), or an object store (`s3://bucket/prefix`, S3-compatible through
//! `object_store`, where every put is atomic). Paths inside it are relative, with `/`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};

use crate::ArchiveError;

/// The root of an archive.
#[derive(Clone)]
pub enum Root {
    Dir(PathBuf),
    Objects(Arc<Objects>),
}

/// An object-store prefix, with the runtime its async client runs on.
pub struct Objects {
    url: String,
    store: Box<dyn ObjectStore>,
    prefix: ObjectPath,
    runtime: tokio::runtime::Runtime,
}

fn object_err(url: &str, e: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Object { url: url.to_string(), reason: e.to_string() }
}

impl Root {
    /// `s3://bucket/prefix` (credentials, region and endpoint from the `AWS_*`
    /// environment, as the AWS tools read them), or a local directory.
    pub fn parse(location: &str) -> Result<Root, ArchiveError> {
        Root::parse_with(location, &[])
    }

    /// As [`Root::parse`], with S3 settings (`object_store`'s names: `aws_endpoint`,
    /// `aws_access_key_id`, `aws_allow_http`, …) over those of the environment.
    pub fn parse_with(location: &str, options: &[(&str, &str)]) -> Result<Root, ArchiveError> {
        let Some(rest) = location.strip_prefix("s3://") else {
            return Ok(Root::Dir(PathBuf::from(location.strip_prefix("file://").unwrap_or(location))));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let store = s3(location, bucket, options)?;
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| object_err(location, e))?;
        let objects = Objects {
            url: location.to_string(),
            store,
            prefix: ObjectPath::from(prefix.trim_end_matches('/')),
            runtime,
        };
        Ok(Root::Objects(Arc::new(objects)))
    }

    /// For messages.
    pub fn display(&self) -> String {
        match self {
            Root::Dir(d) => d.display().to_string(),
            Root::Objects(o) => o.url.clone(),
        }
    }

    /// The local directory, if the archive is one.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Root::Dir(d) => Some(d),
            Root::Objects(_) => None,
        }
    }

    pub(crate) fn create(&self) -> Result<(), ArchiveError> {
        match self {
            Root::Dir(d) => fs::create_dir_all(d).map_err(crate::io_err(d)),
            Root::Objects(_) => Ok(()),
        }
    }

    /// The bytes at `rel`, or `None` if there is nothing there.
    pub fn get(&self, rel: &str) -> Result<Option<Vec<u8>>, ArchiveError> {
        match self {
            Root::Dir(d) => {
                let path = d.join(rel);
                match fs::read(&path) {
                    Ok(b) => Ok(Some(b)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(ArchiveError::Io { path, source: e }),
                }
            }
            Root::Objects(o) => o.runtime.block_on(async {
                match o.store.get(&o.path(rel)).await {
                    Ok(r) => Ok(Some(r.bytes().await.map_err(|e| object_err(&o.url, e))?.to_vec())),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(object_err(&o.url, e)),
                }
            }),
        }
    }

    /// Whether something is at `rel`.
    pub(crate) fn exists(&self, rel: &str) -> Result<bool, ArchiveError> {
        match self {
            Root::Dir(d) => Ok(d.join(rel).exists()),
            Root::Objects(o) => o.runtime.block_on(async {
                match o.store.head(&o.path(rel)).await {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(object_err(&o.url, e)),
                }
            }),
        }
    }

    /// Stores `bytes` at `rel` at once (object stores) and returns `None`, or (a
    /// directory) under a temporary name, returning what [`publish`] must make durable.
    pub(crate) fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<Option<Pending>, ArchiveError> {
        match self {
            Root::Dir(d) => {
                let path = d.join(rel);
                let dir = path.parent().unwrap_or(d).to_path_buf();
                fs::create_dir_all(&dir).map_err(crate::io_err(&dir))?;
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let tmp = dir.join(format!(".{name}.tmp"));
                File::create(&tmp).and_then(|mut f| f.write_all(&bytes)).map_err(crate::io_err(&tmp))?;
                Ok(Some(Pending { tmp, path }))
            }
            Root::Objects(o) => o.runtime.block_on(async {
                o.store.put(&o.path(rel), PutPayload::from(bytes)).await.map_err(|e| object_err(&o.url, e))?;
                Ok(None)
            }),
        }
    }

    /// The `.parquet` files whose path starts with `prefix` (relative, sorted).
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, ArchiveError> {
        let mut out = match self {
            Root::Dir(d) => {
                let mut out = Vec::new();
                let Ok(hours) = fs::read_dir(d) else { return Ok(out) };
                for hour in hours.filter_map(Result::ok) {
                    let hour_name = hour.file_name().to_string_lossy().into_owned();
                    if !hour_name.starts_with("hour=")
                        || !(hour_name.starts_with(prefix) || prefix.starts_with(&hour_name))
                    {
                        continue;
                    }
                    let files = fs::read_dir(hour.path()).map_err(crate::io_err(&hour.path()))?;
                    for f in files.filter_map(Result::ok) {
                        let rel = format!("{hour_name}/{}", f.file_name().to_string_lossy());
                        out.push(rel);
                    }
                }
                out
            }
            Root::Objects(o) => o.runtime.block_on(async {
                use futures_util::TryStreamExt;
                // One hour's directory when the prefix names one, not the whole archive.
                let under = match prefix.rsplit_once('/') {
                    Some((dir, _)) => o.path(dir),
                    None => o.prefix.clone(),
                };
                let listed: Vec<_> =
                    o.store.list(Some(&under)).try_collect().await.map_err(|e| object_err(&o.url, e))?;
                let base = o.prefix.as_ref().len() + usize::from(!o.prefix.as_ref().is_empty());
                Ok::<_, ArchiveError>(listed.into_iter().map(|m| m.location.as_ref()[base..].to_string()).collect())
            })?,
        };
        out.retain(|rel| {
            let name = rel.rsplit('/').next().unwrap_or(rel);
            rel.starts_with(prefix) && name.ends_with(".parquet") && !name.starts_with('.')
        });
        out.sort();
        Ok(out)
    }
}

#[cfg(feature = "s3")]
fn s3(location: &str, bucket: &str, options: &[(&str, &str)]) -> Result<Box<dyn ObjectStore>, ArchiveError> {
    let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
    for (key, value) in options {
        let key: object_store::aws::AmazonS3ConfigKey = key.parse().map_err(|e| object_err(location, e))?;
        builder = builder.with_config(key, *value);
    }
    Ok(Box::new(builder.build().map_err(|e| object_err(location, e))?))
}

#[cfg(not(feature = "s3"))]
fn s3(location: &str, _: &str, _: &[(&str, &str)]) -> Result<Box<dyn ObjectStore>, ArchiveError> {
    Err(object_err(location, "this topk was built without the s3 feature"))
}

impl Objects {
    fn path(&self, rel: &str) -> ObjectPath {
        if self.prefix.as_ref().is_empty() {
            ObjectPath::from(rel)
        } else {
            ObjectPath::from(format!("{}/{rel}", self.prefix.as_ref()))
        }
    }
}

/// A file written to a directory, not yet durable under its final name.
pub(crate) struct Pending {
    pub(crate) tmp: PathBuf,
    pub(crate) path: PathBuf,
}
