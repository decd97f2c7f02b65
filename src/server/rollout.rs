//! Rolling updates: how far one step of an update may go, as a pure function of the replica
//! counts and the spec's `update_strategy` (Kubernetes' rules: at most `target + max_surge`
//! replicas of both versions, at least `target - max_unavailable` ready). New replicas are
//! started as room allows; old ones are taken out (drained, then stopped) as new ones become
//! ready. A new version that never becomes ready takes nothing more from the old one, and an
//! old replica that is not ready stays until the new version is complete.

use crate::spec::UpdateStrategy;

/// The replica counts of an update in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Replicas the API should have once the update is done.
    pub target: u32,
    /// Members of the new version, started or starting.
    pub new_started: u32,
    pub new_ready: u32,
    /// Members of the old versions still in service.
    pub old_members: u32,
    pub old_ready: u32,
}

/// What the next step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// How many members the new version should have.
    pub new_members: u32,
    /// How many old members to take out.
    pub remove_old: u32,
}

/// The surge and unavailability `strategy` allows for `target` replicas: `max_surge`
/// percentages round up and `max_unavailable` ones down, as in Kubernetes; at least one of
/// them is not zero, so an update always moves.
pub fn allowance(strategy: &UpdateStrategy, target: u32) -> (u32, u32) {
    let surge = strategy.max_surge.of(target);
    let unavailable = match strategy.max_unavailable {
        crate::spec::Surge::Count(n) => n,
        crate::spec::Surge::Percent(p) => {
            u32::try_from(u64::from(target) * u64::from(p) / 100).unwrap_or(u32::MAX)
        }
    };
    if surge == 0 && unavailable == 0 {
        (1, 0)
    } else {
        (surge, unavailable)
    }
}

/// The next step of an update with `surge` and `unavailable` replicas allowed.
pub fn step(c: Counts, (surge, unavailable): (u32, u32)) -> Step {
    let max_total = c.target.saturating_add(surge);
    let min_available = c.target.saturating_sub(unavailable);
    // Old members go as the new ones make up for them. One that is not ready stays until the
    // new version is complete: it may be starting (after a restart) and serve before it.
    let remove_old = if c.new_ready >= c.target {
        c.old_members
    } else {
        (c.new_ready + c.old_ready)
            .saturating_sub(min_available)
            .min(c.old_ready)
    };
    // Old members that are not ready hold no room: they do not keep new ones from starting.
    let old_ready_after = c.old_ready.saturating_sub(remove_old);
    let new_members = c
        .target
        .min(max_total.saturating_sub(old_ready_after))
        .max(c.new_started);
    Step {
        new_members,
        remove_old,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Surge;

    fn strategy(surge: Surge, unavailable: Surge) -> UpdateStrategy {
        UpdateStrategy {
            max_surge: surge,
            max_unavailable: unavailable,
        }
    }

    /// Runs an update of `target` replicas to the end, every started replica becoming ready
    /// one step later; returns the (new, old) members after each step.
    fn run(target: u32, allowed: (u32, u32)) -> Vec<(u32, u32)> {
        let (mut new_started, mut new_ready, mut old) = (0, 0, target);
        let mut trace = Vec::new();
        for _ in 0..50 {
            let s = step(
                Counts {
                    target,
                    new_started,
                    new_ready,
                    old_members: old,
                    old_ready: old,
                },
                allowed,
            );
            // Never fewer ready than allowed, never more members than allowed.
            assert!(new_ready + old - s.remove_old >= target - allowed.1.min(target));
            old -= s.remove_old;
            new_ready = new_started;
            new_started = s.new_members;
            assert!(new_started + old <= target + allowed.0, "{trace:?}");
            trace.push((new_started, old));
            if old == 0 && new_ready == target {
                return trace;
            }
        }
        panic!("the update never finished: {trace:?}");
    }

    #[test]
    fn one_replica_surges_one_then_takes_the_old_one_out_once_the_new_one_is_ready() {
        let allowed = allowance(&UpdateStrategy::default(), 1);
        assert_eq!(allowed, (1, 0));
        assert_eq!(run(1, allowed), [(1, 1), (1, 1), (1, 0)]);
    }

    #[test]
    fn four_replicas_with_25_percent_move_one_or_two_at_a_time() {
        let allowed = allowance(&UpdateStrategy::default(), 4);
        assert_eq!(allowed, (1, 1));
        let trace = run(4, allowed);
        assert_eq!(trace[0], (2, 3), "one surged, one taken out at once");
        assert_eq!(*trace.last().unwrap(), (4, 0));
    }

    #[test]
    fn zero_surge_takes_old_replicas_out_first() {
        let allowed = allowance(&strategy(Surge::Count(0), Surge::Count(1)), 2);
        assert_eq!(allowed, (0, 1));
        let trace = run(2, allowed);
        assert_eq!(trace[0], (1, 1));
    }

    #[test]
    fn a_new_version_that_never_becomes_ready_takes_nothing_more_from_the_old_one() {
        let allowed = allowance(&UpdateStrategy::default(), 1);
        let c = Counts {
            target: 1,
            new_started: 1,
            new_ready: 0,
            old_members: 1,
            old_ready: 1,
        };
        assert_eq!(
            step(c, allowed),
            Step {
                new_members: 1,
                remove_old: 0
            }
        );
        // An old replica that is not ready (starting again after a restart) stays too.
        let c = Counts { old_ready: 0, ..c };
        assert_eq!(step(c, allowed).remove_old, 0);
    }

    #[test]
    fn old_members_that_are_not_ready_do_not_keep_the_update_from_finishing() {
        let allowed = allowance(&UpdateStrategy::default(), 2);
        let c = Counts {
            target: 2,
            new_started: 1,
            new_ready: 1,
            old_members: 2,
            old_ready: 1,
        };
        let s = step(c, allowed);
        assert_eq!(s.new_members, 2, "{s:?}");
        let done = Counts {
            new_started: 2,
            new_ready: 2,
            ..c
        };
        assert_eq!(step(done, allowed).remove_old, 2);
    }
}
