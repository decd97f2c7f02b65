//! The leases a job's writer keeps alive: every lease it handed out to a feeder and whose
//! settle is not written yet, extended a third of its visibility after the lease or its last
//! extension. Each lease is kept for as long as the feeder that holds it lives (its
//! [`Holding`]): leases left by a feeder that ended without giving them back (it panicked, or
//! its task was cancelled) are given back to the queue rather than kept alive until the job's
//! timeout.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::store::batches::{Extension, Settle};

/// A feeder's hold on the leases it is given: while it lives the writer keeps them alive;
/// once it is dropped, those not settled go back to the queue, their delivery not counted.
#[derive(Debug, Default)]
pub(super) struct Holding(Arc<()>);

impl Holding {
    pub fn new() -> Holding {
        Holding::default()
    }

    /// What the writer keeps to tell whether the feeder still lives.
    pub(super) fn watch(&self) -> Weak<()> {
        Arc::downgrade(&self.0)
    }
}

/// The leases a job's feeders hold (handed out by its writer and not yet settled), by
/// batch, kept alive until their settles are written.
#[derive(Default)]
pub(super) struct Kept(HashMap<i64, KeptLease>);

struct KeptLease {
    lease_id: String,
    visibility_ms: i64,
    /// When it is extended next.
    renew_at: Instant,
    /// The feeder that holds it.
    holder: Weak<()>,
}

/// How long after a lease (or its extension) it is extended again: a third of its
/// visibility, so that two extensions may fail before it lapses.
fn renewal(visibility_ms: i64) -> Duration {
    Duration::from_millis((visibility_ms / 3).max(1) as u64)
}

impl Kept {
    /// A lease handed out (or extended) at `now` to the feeder `holder` watches.
    pub fn hold(
        &mut self,
        (seq, lease_id): (i64, &str),
        visibility_ms: i64,
        holder: Weak<()>,
        now: Instant,
    ) {
        let kept = KeptLease {
            lease_id: lease_id.to_string(),
            visibility_ms,
            renew_at: now + renewal(visibility_ms),
            holder,
        };
        self.0.insert(seq, kept);
    }

    /// The leases whose feeder is gone, let go and returned as the releases that give them
    /// back (a release of a lease settled meanwhile changes nothing).
    pub fn abandoned(&mut self) -> Vec<Settle> {
        let mut gone = Vec::new();
        self.0.retain(|seq, k| {
            let held = k.holder.strong_count() > 0;
            if !held {
                gone.push(Settle::Release {
                    seq: *seq,
                    lease_id: std::mem::take(&mut k.lease_id),
                    crashed: false,
                });
            }
            held
        });
        gone.sort_by_key(|s| s.lease().0);
        gone
    }

    /// The extensions due at `now` (wall clock `now_ms`), each for its visibility.
    pub fn due(&self, now: Instant, now_ms: i64) -> Vec<Extension> {
        let mut due: Vec<Extension> = self
            .0
            .iter()
            .filter(|(_, k)| k.renew_at <= now)
            .map(|(seq, k)| Extension {
                seq: *seq,
                lease_id: k.lease_id.clone(),
                until_ms: now_ms + k.visibility_ms,
            })
            .collect();
        due.sort_by_key(|e| e.seq);
        due
    }

    /// `extend` was written at `now` (`held[i]`: extension i found its lease): those
    /// extended fall due again later, those whose lease was lost are let go.
    pub fn extended(&mut self, extend: &[Extension], held: &[bool], now: Instant) {
        for (e, held) in extend.iter().zip(held) {
            let Some(k) = self.0.get_mut(&e.seq).filter(|k| k.lease_id == e.lease_id) else {
                continue;
            };
            if *held {
                k.renew_at = now + renewal(k.visibility_ms);
            } else {
                self.0.remove(&e.seq);
            }
        }
    }

    /// `settles` were written: their leases are let go.
    pub fn settled(&mut self, settles: &[Settle]) {
        for s in settles {
            let (seq, lease_id) = s.lease();
            if self.0.get(&seq).is_some_and(|k| k.lease_id == lease_id) {
                self.0.remove(&seq);
            }
        }
    }

    /// When the next extension falls due.
    pub fn next_renewal(&self) -> Option<Instant> {
        self.0.values().map(|k| k.renew_at).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_kept_lease_is_extended_every_third_of_its_visibility_until_settled_or_lost() {
        let t0 = Instant::now();
        let (mut kept, feeder) = (Kept::default(), Holding::new());
        kept.hold((1, "a"), 300, feeder.watch(), t0);
        kept.hold((2, "b"), 300, feeder.watch(), t0);
        assert!(kept.due(t0, 0).is_empty());
        assert_eq!(kept.next_renewal(), Some(t0 + ms(100)));
        let t1 = t0 + ms(100);
        let due = kept.due(t1, 5_000);
        let extension = |seq, lease_id: &str| Extension {
            seq,
            lease_id: lease_id.to_string(),
            until_ms: 5_300,
        };
        assert_eq!(due, [extension(1, "a"), extension(2, "b")]);
        // Batch 2's lease was lost (it lapsed and another worker has it): let go.
        kept.extended(&due, &[true, false], t1);
        assert_eq!(kept.next_renewal(), Some(t1 + ms(100)));
        assert_eq!(kept.due(t1 + ms(100), 5_100).len(), 1);
        // A settle of another delivery of batch 1 leaves its lease; its own lets it go.
        let other = Settle::Release {
            seq: 1,
            lease_id: "old".to_string(),
            crashed: false,
        };
        kept.settled(&[other]);
        assert!(kept.next_renewal().is_some());
        let own = Settle::Ack {
            seq: 1,
            lease_id: "a".to_string(),
            duration_ms: 1,
        };
        kept.settled(&[own]);
        assert_eq!(kept.next_renewal(), None);
    }

    #[test]
    fn the_leases_of_a_feeder_that_is_gone_are_given_back_and_no_longer_kept() {
        let t0 = Instant::now();
        let (mut kept, lives, ends) = (Kept::default(), Holding::new(), Holding::new());
        kept.hold((1, "a"), 300, lives.watch(), t0);
        kept.hold((3, "c"), 300, ends.watch(), t0);
        kept.hold((2, "b"), 300, ends.watch(), t0);
        assert!(kept.abandoned().is_empty());
        drop(ends);
        let release = |seq, lease_id: &str| Settle::Release {
            seq,
            lease_id: lease_id.to_string(),
            crashed: false,
        };
        assert_eq!(kept.abandoned(), [release(2, "b"), release(3, "c")]);
        assert!(kept.abandoned().is_empty(), "given back once");
        let due = kept.due(t0 + ms(100), 0);
        assert_eq!(due.iter().map(|e| e.seq).collect::<Vec<_>>(), [1]);
    }
}
