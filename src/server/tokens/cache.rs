//! Valid user tokens (with their user's teams), remembered in memory so a token check (every prediction on a
//! non-loopback server, every control call) does not queue on the database.
//!
//! Only tokens the database accepted are kept, by hash, with their expiry; an unknown token
//! always goes to the database, so a new token works at once. Whoever revokes a user token
//! must call [`TokenCache::forget_all`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use super::Identity;
use crate::clock::now;

/// Beyond this many remembered tokens the cache starts again empty (a bound, not a policy).
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub struct TokenCache {
    by_hash: RwLock<HashMap<String, (Identity, Option<i64>)>>,
    /// Bumped by [`TokenCache::forget_all`]: a lookup that began before a revocation must not
    /// remember what it found.
    generation: AtomicU64,
}

impl TokenCache {
    /// Who a remembered, unexpired token belongs to.
    pub fn get(&self, hash: &str) -> Option<Identity> {
        let map = self.by_hash.read().unwrap_or_else(|p| p.into_inner());
        let (user, expires_at) = map.get(hash)?;
        expires_at
            .is_none_or(|exp| exp > now())
            .then(|| user.clone())
    }

    /// Where the cache stands: take it before looking a token up in the database, and hand it
    /// to [`TokenCache::remember`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Remembers a token the database accepted, unless the cache was cleared since
    /// `generation` (a revocation may have raced the lookup).
    pub fn remember(&self, generation: u64, hash: String, user: Identity, expires_at: Option<i64>) {
        let mut map = self.by_hash.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(hash, (user, expires_at));
    }

    /// Forgets every token: call after revoking any user token or changing a team.
    pub fn forget_all(&self) {
        let mut map = self.by_hash.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> Identity {
        Identity {
            user: crate::store::UserRow {
                id: "u1".into(),
                username: "ada".into(),
                admin: false,
            },
            teams: Vec::new(),
            scope: None,
            expires_at: None,
        }
    }

    #[test]
    fn remembered_tokens_are_found_until_they_expire_or_are_forgotten() {
        let cache = TokenCache::default();
        assert!(cache.get("h").is_none());
        cache.remember(cache.generation(), "h".into(), user(), None);
        assert_eq!(cache.get("h").unwrap().user.username, "ada");
        cache.remember(cache.generation(), "old".into(), user(), Some(now() - 1));
        assert!(cache.get("old").is_none(), "expired");
        cache.forget_all();
        assert!(cache.get("h").is_none());
    }

    #[test]
    fn a_lookup_that_raced_a_revocation_is_not_remembered() {
        let cache = TokenCache::default();
        let before = cache.generation();
        cache.forget_all(); // a revocation lands while the lookup runs
        cache.remember(before, "h".into(), user(), None);
        assert!(cache.get("h").is_none());
    }
}
