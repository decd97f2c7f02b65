//! A submission's files, checked before anything is stored: `delimited_files.paths` (local
//! paths under the data root, URLs on addresses the server may fetch from) and `s3_paths`
//! of `delimited_files` or `file_path_lister` (listed now, so that a submission that finds
//! no file is refused at once and a dry run can say which files a job would read).

use std::collections::HashSet;
use std::path::Path;

use super::sources::{self, Source, SourceError};
use crate::batch::submission::{batches, Input, S3Listing, S3Use, Submission};
use crate::server::fetch::Fetcher;
use crate::server::objects::{Filter, ObjectError, S3Access, S3Path};

/// The most files one job may read or list.
pub const MAX_FILES: usize = 100_000;

/// The files of `sub`, in order (none for `item_list`).
pub(super) async fn check(
    (fetcher, objects): (&Fetcher, &S3Access),
    data_root: Option<&Path>,
    sub: &Submission,
) -> Result<Vec<Source>, SourceError> {
    match &sub.input {
        Input::Items(_) => Ok(Vec::new()),
        Input::Files(paths) => {
            let mut checked = Vec::with_capacity(paths.len());
            for (i, path) in paths.iter().enumerate() {
                let source = sources::resolve(i, path, data_root)?;
                if let Source::Url(url) = &source {
                    fetcher.check(url).await.map_err(|refusal| {
                        SourceError::Forbidden(format!(
                            "delimited_files.paths[{i}]: {url}: {refusal}"
                        ))
                    })?;
                }
                checked.push(source);
            }
            Ok(checked)
        }
        Input::S3(listing) => Ok(list(objects, listing).await?),
    }
}

/// Every object under `listing.s3_paths` its globs keep, each once, in the order listed.
async fn list(objects: &S3Access, listing: &S3Listing) -> Result<Vec<Source>, ObjectError> {
    let parent = listing.of.field();
    let mut paths = Vec::with_capacity(listing.s3_paths.len());
    for (i, text) in listing.s3_paths.iter().enumerate() {
        let field = format!("{parent}.s3_paths[{i}]");
        let path = S3Path::parse(text).map_err(|why| ObjectError::BadPath {
            field: field.clone(),
            value: text.clone(),
            why,
        })?;
        paths.push((field, path));
    }
    let filter = Filter::new(parent, &listing.includes, &listing.excludes).map_err(|e| {
        ObjectError::BadGlob {
            field: e.field,
            why: e.why,
        }
    })?;
    let (mut found, mut seen) = (Vec::new(), HashSet::new());
    for (field, path) in &paths {
        let keys = objects
            .list((parent, field), path, &filter, MAX_FILES - found.len())
            .await?;
        for key in keys {
            if seen.insert((path.bucket.clone(), key.clone())) {
                found.push(Source::S3 {
                    bucket: path.bucket.clone(),
                    key,
                });
            }
        }
    }
    if found.is_empty() {
        let why = if filter.filters() {
            "no file under s3_paths matches includes and excludes; `?dryRun=true` lists the files a submission finds"
        } else {
            "no file found under s3_paths (empty files are skipped); an s3:// path is a key or a prefix of keys, e.g. s3://bucket/dir/"
        };
        return Err(ObjectError::NoMatches {
            parent: parent.to_string(),
            why: why.to_string(),
        });
    }
    Ok(found)
}

/// The batches stored with the job when it is submitted (`item_list`, and the paths a
/// `file_path_lister` listed), with how many items and where they were found; `None` for
/// files read once the job is stored.
pub(super) fn batches_now(
    input: Input,
    files: &[Source],
    batch_size: u32,
) -> Option<(usize, &'static str, Vec<String>)> {
    let (items, origin) = match input {
        Input::Items(items) => (items, "found in job submission"),
        Input::S3(listing) if listing.of == S3Use::FilePathLister => {
            let paths = files
                .iter()
                .map(|f| serde_json::Value::String(f.to_string()))
                .collect();
            (paths, "listed in S3")
        }
        Input::S3(_) | Input::Files(_) => return None,
    };
    Some((items.len(), origin, batches(&items, batch_size)))
}
