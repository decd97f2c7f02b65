//! The gateway's route table: API name → live API, paths → live API, and first path segments
//! (`/<segment>/...`, Model Bazaar's prefix routes) → live API. O(1) lookups, no IO. A lookup
//! takes no lock (`swapped.rs`): the maps are swapped whole for changed copies, and changes
//! are rare (deploys and deletes). The maps hash
//! with foldhash (seeded per process): their keys are deployed paths and names, and a
//! request's path is only ever looked up.

use std::sync::Arc;

use arc_swap::Guard;
use foldhash::{HashMap, HashMapExt};

use super::swapped::Swapped;

/// What the table routes to: something with a name and the paths it serves.
pub trait Routed {
    fn name(&self) -> &str;
    fn paths(&self) -> Vec<&str>;
    /// The first path segments under which it serves every path (`/<segment>/<rest>`).
    fn prefixes(&self) -> Vec<&str>;
}

/// Routes by name and by path; one entry per name, one per path (an entry may have several).
pub struct RouteTable<T> {
    inner: Swapped<Inner<T>>,
}

struct Inner<T> {
    by_name: HashMap<String, Arc<T>>,
    by_path: HashMap<String, Arc<T>>,
    by_prefix: HashMap<String, Arc<T>>,
    /// Set by [`RouteTable::close`]: nothing is routed after it.
    closed: bool,
}

/// Why an entry was not routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl<T: Routed> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable {
            inner: Swapped::new(Inner {
                by_name: HashMap::new(),
                by_path: HashMap::new(),
                by_prefix: HashMap::new(),
                closed: false,
            }),
        }
    }
}

impl<T: Routed> RouteTable<T> {
    fn read(&self) -> Guard<Arc<Inner<T>>> {
        self.inner.load()
    }

    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<T>> {
        self.read().by_name.get(name).cloned()
    }

    /// Every entry, in no particular order.
    pub fn all(&self) -> Vec<Arc<T>> {
        self.read().by_name.values().cloned().collect()
    }

    /// The entry that serves `path`.
    pub fn by_path(&self, path: &str) -> Option<Arc<T>> {
        self.read().by_path.get(path).cloned()
    }

    /// The entry that serves every path under `/<segment>/`.
    pub fn by_prefix(&self, segment: &str) -> Option<Arc<T>> {
        self.read().by_prefix.get(segment).cloned()
    }

    /// Routes `entry`'s name and paths to it; the entry it replaces under that name loses its
    /// paths too (those that still lead to it). Refused once the table is closed.
    pub fn insert(&self, entry: Arc<T>) -> Result<Option<Arc<T>>, Closed> {
        self.inner.change(|routes| {
            if routes.closed {
                return Err(Closed);
            }
            let old = routes
                .by_name
                .insert(entry.name().to_string(), entry.clone());
            if let Some(old) = &old {
                routes.unroute(old);
            }
            for path in entry.paths() {
                routes.by_path.insert(path.to_string(), entry.clone());
            }
            for segment in entry.prefixes() {
                routes.by_prefix.insert(segment.to_string(), entry.clone());
            }
            Ok(old)
        })
    }

    /// Takes the entry named `name` out, with its path.
    pub fn remove(&self, name: &str) -> Option<Arc<T>> {
        self.inner.change(|routes| {
            let old = routes.by_name.remove(name)?;
            routes.unroute(&old);
            Some(old)
        })
    }

    /// Closes the table and takes every entry out.
    pub fn close(&self) -> Vec<Arc<T>> {
        self.inner.change(|routes| {
            routes.closed = true;
            routes.by_path.clear();
            routes.by_prefix.clear();
            routes.by_name.drain().map(|(_, entry)| entry).collect()
        })
    }
}

impl<T> Clone for Inner<T> {
    fn clone(&self) -> Self {
        Inner {
            by_name: self.by_name.clone(),
            by_path: self.by_path.clone(),
            by_prefix: self.by_prefix.clone(),
            closed: self.closed,
        }
    }
}

impl<T: Routed> Inner<T> {
    /// Removes `entry`'s paths and prefixes, those that still lead to it.
    fn unroute(&mut self, entry: &Arc<T>) {
        for path in entry.paths() {
            remove_if_to(&mut self.by_path, path, entry);
        }
        for segment in entry.prefixes() {
            remove_if_to(&mut self.by_prefix, segment, entry);
        }
    }
}

/// Removes `key` from `map` when it leads to `entry`.
fn remove_if_to<T>(map: &mut HashMap<String, Arc<T>>, key: &str, entry: &Arc<T>) {
    if map.get(key).is_some_and(|cur| Arc::ptr_eq(cur, entry)) {
        map.remove(key);
    }
}
