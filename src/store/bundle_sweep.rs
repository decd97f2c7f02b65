//! Removing bundles and unpacked projects that no API references: those an API stopped using at
//! once, the others (uploaded, never deployed) after a grace period, so one just uploaded for a
//! deploy that has not come yet stays. A bundle is
//! referenced by a model (an API or a saved model) as its bundle, as the bundle of the version
//! that served last (still serving during an update), or as one of its saved files' layers.

use std::collections::HashSet;
use std::fs;

use rusqlite::{params, Connection};

use super::bundles::BundleStore;
use super::StoreError;
use crate::clock::now;

/// How long an uploaded bundle that no API references yet is kept (at start-up sweeps).
pub const GRACE_SECS: i64 = 3600;

/// The bundles a sweep removed from the database, and those that remain.
#[derive(Debug, Default)]
pub struct Forgotten {
    pub removed: Vec<String>,
    remaining: HashSet<String>,
}

/// Every bundle a stored model references.
fn referenced(conn: &Connection) -> Result<HashSet<String>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT bundle_sha256, serving_bundle_sha256, overlay_sha256 FROM models")?;
    let rows = stmt.query_map([], |r| {
        Ok([
            r.get::<_, Option<String>>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, Option<String>>(2)?,
        ])
    })?;
    let mut refs = HashSet::new();
    for row in rows {
        for layers in row?.into_iter().flatten() {
            refs.extend(layers.split(',').map(str::to_string));
        }
    }
    Ok(refs)
}

/// Forgets the bundles no model references and nothing runs from (`in_use`): those `released`
/// (an API stopped using them) whatever their age, the others once older than `grace_secs`.
/// One transaction; remove their files afterwards with [`remove_files`].
pub fn forget_unreferenced(
    conn: &mut Connection,
    released: &HashSet<String>,
    in_use: &HashSet<String>,
    grace_secs: i64,
) -> Result<Forgotten, StoreError> {
    let tx = conn.transaction()?;
    let mut refs = referenced(&tx)?;
    refs.extend(in_use.iter().cloned());
    let all: Vec<(String, i64)> = {
        let mut stmt = tx.prepare("SELECT sha256, created_at FROM bundles")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let cutoff = now() - grace_secs;
    let mut forgotten = Forgotten::default();
    for (sha, created) in all {
        let unused = !refs.contains(&sha) && (released.contains(&sha) || created <= cutoff);
        if unused {
            tx.execute("DELETE FROM bundles WHERE sha256 = ?1", params![sha])?;
            forgotten.removed.push(sha);
        } else {
            forgotten.remaining.insert(sha);
        }
    }
    tx.commit()?;
    Ok(forgotten)
}

/// Removes the files of forgotten bundles, and every unpacked project with a layer that is not
/// a remaining bundle. Blocking; returns how many bundles and projects it removed.
pub fn remove_files(store: &BundleStore, forgotten: &Forgotten) -> (usize, usize) {
    let mut bundles = 0;
    for sha in &forgotten.removed {
        bundles += usize::from(fs::remove_file(store.archive_path(sha)).is_ok());
    }
    let mut projects = 0;
    let Ok(entries) = fs::read_dir(store.projects_dir()) else {
        return (bundles, projects);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // Partial unpacks (`.<name>.<pid>`) are another's to clean.
        if name.starts_with('.') {
            continue;
        }
        // A copy saved without its base's secrets is unpacked as `<layers>-noenv`.
        let layers = name.strip_suffix("-noenv").unwrap_or(&name);
        if layers
            .split('+')
            .any(|layer| !forgotten.remaining.contains(layer))
        {
            projects += usize::from(fs::remove_dir_all(entry.path()).is_ok());
        }
    }
    (bundles, projects)
}
