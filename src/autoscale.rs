//! The replica-count decision for a RealtimeAPI, as cortex's autoscaler makes it: a pure
//! function of the in-flight requests observed over the spec's `window` and the replica counts
//! recommended before (stabilization). No IO, no clock: times are passed in, as seconds since
//! any fixed start.
//!
//! Each decision:
//! 1. the mean in-flight requests over `window` ÷ `target_replica_concurrency` is the raw
//!    recommendation;
//! 2. within the tolerance band around the current count (`downscale_tolerance` below,
//!    `upscale_tolerance` above) the count stays; otherwise it is the raw value rounded up;
//! 3. one step changes the count by at most the scale factors (`max_downscale_factor`,
//!    rounded down so that small counts can shrink too, `max_upscale_factor` rounded up) and
//!    stays within `min_replicas..=max_replicas`;
//! 4. stabilization: a scale-down goes no lower than the highest recommendation of the last
//!    `downscale_stabilization_period`, a scale-up no higher than the lowest of the last
//!    `upscale_stabilization_period`, so brief dips and spikes do not move the count.
//!
//! With `min_replicas: 0` (which cortex never had) an API with no request in flight during the
//! whole downscale period goes to zero replicas; from zero, any request in flight asks for one.

use std::collections::VecDeque;

use crate::spec::Autoscaling;

/// One observation: how many requests were in flight across the API's replicas at `at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: f64,
    pub in_flight: f64,
}

/// The decision's inputs from the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub target_concurrency: f64,
    pub window: f64,
    pub downscale_stabilization: f64,
    pub upscale_stabilization: f64,
    pub max_downscale_factor: f64,
    pub max_upscale_factor: f64,
    pub downscale_tolerance: f64,
    pub upscale_tolerance: f64,
}

impl From<&Autoscaling> for Policy {
    fn from(a: &Autoscaling) -> Policy {
        Policy {
            min_replicas: a.min_replicas,
            max_replicas: a.max_replicas,
            target_concurrency: a.target_replica_concurrency,
            window: a.window.seconds() as f64,
            downscale_stabilization: a.downscale_stabilization_period.seconds() as f64,
            upscale_stabilization: a.upscale_stabilization_period.seconds() as f64,
            max_downscale_factor: a.max_downscale_factor,
            max_upscale_factor: a.max_upscale_factor,
            downscale_tolerance: a.downscale_tolerance,
            upscale_tolerance: a.upscale_tolerance,
        }
    }
}

/// The autoscaler of one API: its observations and its past recommendations.
#[derive(Debug, Clone)]
pub struct Autoscaler {
    policy: Policy,
    samples: VecDeque<Sample>,
    /// (time, recommendation before stabilization), for the stabilization periods.
    recommendations: VecDeque<(f64, u32)>,
}

impl Autoscaler {
    pub fn new(policy: Policy) -> Autoscaler {
        Autoscaler {
            policy,
            samples: VecDeque::new(),
            recommendations: VecDeque::new(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Records the requests in flight at `at` (times only move forward).
    pub fn observe(&mut self, sample: Sample) {
        self.samples.push_back(sample);
        // Kept a little longer than either period, to know that one was quiet throughout.
        let keep_from =
            sample.at - self.policy.window.max(self.policy.downscale_stabilization) - 1.0;
        while self.samples.front().is_some_and(|s| s.at < keep_from) {
            self.samples.pop_front();
        }
    }

    /// How many replicas the API should have at `at`, running `current` now.
    pub fn decide(&mut self, at: f64, current: u32) -> u32 {
        let p = &self.policy;
        let recent: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.at > at - p.window)
            .map(|s| s.in_flight)
            .collect();
        let mean = if recent.is_empty() {
            0.0
        } else {
            recent.iter().sum::<f64>() / recent.len() as f64
        };
        let recommendation = if current == 0 {
            // From zero: any request waiting asks for replicas.
            let waiting = recent.iter().any(|n| *n > 0.0);
            if waiting {
                ((mean / p.target_concurrency).ceil() as u32).max(1)
            } else {
                0
            }
        } else {
            let raw = mean / p.target_concurrency.max(f64::MIN_POSITIVE);
            let ratio = raw / f64::from(current);
            let mut r =
                if ratio >= 1.0 - p.downscale_tolerance && ratio <= 1.0 + p.upscale_tolerance {
                    current
                } else {
                    raw.ceil() as u32
                };
            // cortex rounds this up, which never lets 3 replicas become 2 or 2 become 1 with
            // its default factor (0.75): rounded down here, so every count can step down.
            let floor = (f64::from(current) * p.max_downscale_factor).floor() as u32;
            let ceil = (f64::from(current) * p.max_upscale_factor).ceil() as u32;
            r = r.clamp(floor.min(current), ceil.max(current + 1));
            if p.min_replicas == 0 && r == 0 {
                r = 0;
            } else {
                r = r.max(1);
            }
            r
        };
        let recommendation =
            recommendation.clamp(p.min_replicas, p.max_replicas.max(p.min_replicas));
        self.recommendations.push_back((at, recommendation));
        let keep_from = at - p.downscale_stabilization.max(p.upscale_stabilization);
        while self
            .recommendations
            .front()
            .is_some_and(|(t, _)| *t < keep_from)
        {
            self.recommendations.pop_front();
        }
        let within = |period: f64| {
            self.recommendations
                .iter()
                .filter(move |(t, _)| *t > at - period)
                .map(|(_, r)| *r)
        };
        let decided = if current == 0 {
            // A request waits for a replica: no stabilization delays a cold start.
            recommendation
        } else if recommendation < current {
            // Down no further than the highest recommendation of the downscale period.
            let highest = within(p.downscale_stabilization)
                .max()
                .unwrap_or(recommendation);
            highest.min(current)
        } else if recommendation > current {
            // Up no further than the lowest recommendation of the upscale period.
            let lowest = within(p.upscale_stabilization)
                .min()
                .unwrap_or(recommendation);
            lowest.max(current)
        } else {
            current
        };
        // Scale to zero only after a whole downscale period without a request in flight.
        if decided == 0 && current > 0 {
            let quiet_since_long_enough = self
                .samples
                .front()
                .is_some_and(|s| s.at <= at - p.downscale_stabilization)
                && self
                    .samples
                    .iter()
                    .filter(|s| s.at > at - p.downscale_stabilization)
                    .all(|s| s.in_flight == 0.0);
            if !quiet_since_long_enough {
                return current.min(1).max(decided);
            }
        }
        decided
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cortex's defaults with short periods: window 10 s, downscale 30 s, upscale 10 s.
    fn policy(min: u32, max: u32) -> Policy {
        Policy {
            min_replicas: min,
            max_replicas: max,
            target_concurrency: 1.0,
            window: 10.0,
            downscale_stabilization: 30.0,
            upscale_stabilization: 10.0,
            max_downscale_factor: 0.75,
            max_upscale_factor: 1.5,
            downscale_tolerance: 0.05,
            upscale_tolerance: 0.05,
        }
    }

    /// Runs a trace: (second, in-flight) samples each second, a decision every `every`
    /// seconds applied at once; the counts decided, in order.
    fn run(
        a: &mut Autoscaler,
        start: u32,
        load: impl Fn(u32) -> f64,
        secs: u32,
        every: u32,
    ) -> Vec<u32> {
        let mut current = start;
        let mut out = Vec::new();
        for t in 0..secs {
            a.observe(Sample {
                at: f64::from(t),
                in_flight: load(t),
            });
            if t % every == every - 1 {
                current = a.decide(f64::from(t), current);
                out.push(current);
            }
        }
        out
    }

    #[test]
    fn a_step_up_in_load_grows_by_the_upscale_factor_until_it_is_met() {
        let mut a = Autoscaler::new(policy(1, 10));
        let counts = run(&mut a, 1, |_| 6.0, 120, 10);
        // 1 → 2 (ceil 1.5) → 3 → 5 → 6, then steady.
        assert_eq!(&counts[..5], &[2, 3, 5, 6, 6], "{counts:?}");
        assert!(counts.iter().all(|c| *c <= 6));
        assert_eq!(*counts.last().unwrap(), 6);
    }

    #[test]
    fn a_step_down_waits_for_the_downscale_period_and_shrinks_by_the_factor() {
        let mut a = Autoscaler::new(policy(1, 10));
        let counts = run(&mut a, 8, |t| if t < 20 { 8.0 } else { 1.0 }, 400, 10);
        let first_drop = counts.iter().position(|c| *c < 8).unwrap();
        // Load drops at t=20; the window needs 10 s to see it, then 30 s of stabilization.
        assert!(first_drop >= 4, "no early scale-down: {counts:?}");
        for pair in counts.windows(2) {
            let (from, to) = (pair[0], pair[1]);
            assert!(to <= from, "only down: {counts:?}");
            assert!(to >= (f64::from(from) * 0.75).floor() as u32, "{counts:?}");
        }
        assert_eq!(*counts.last().unwrap(), 1, "{counts:?}");
    }

    #[test]
    fn flapping_load_does_not_flap_the_count() {
        let mut a = Autoscaler::new(policy(1, 10));
        // Load alternates every 5 s between 2 and 6: the windowed mean sits near 4.
        let counts = run(
            &mut a,
            4,
            |t| if (t / 5) % 2 == 0 { 2.0 } else { 6.0 },
            200,
            10,
        );
        assert!(counts.iter().all(|c| *c == 4), "{counts:?}");
    }

    #[test]
    fn small_changes_within_the_tolerance_keep_the_count() {
        let mut a = Autoscaler::new(policy(1, 100));
        // 20 replicas at 20.8 in flight: 4% over, inside the 5% band.
        let counts = run(&mut a, 20, |_| 20.8, 60, 10);
        assert!(counts.iter().all(|c| *c == 20), "{counts:?}");
        let mut b = Autoscaler::new(policy(1, 100));
        let counts = run(&mut b, 20, |_| 21.5, 60, 10);
        assert!(
            counts.iter().any(|c| *c > 20),
            "7.5% over goes up: {counts:?}"
        );
    }

    #[test]
    fn bounds_hold() {
        let mut a = Autoscaler::new(policy(2, 3));
        let counts = run(&mut a, 2, |_| 50.0, 60, 10);
        assert!(counts.iter().all(|c| (2..=3).contains(c)), "{counts:?}");
        let mut b = Autoscaler::new(policy(2, 3));
        let counts = run(&mut b, 3, |_| 0.0, 120, 10);
        assert_eq!(*counts.last().unwrap(), 2, "{counts:?}");
    }

    #[test]
    fn with_min_zero_an_idle_api_goes_to_zero_and_a_request_brings_one_back() {
        let mut a = Autoscaler::new(policy(0, 5));
        let counts = run(&mut a, 1, |t| if t < 5 { 1.0 } else { 0.0 }, 80, 5);
        let zero_at = counts.iter().position(|c| *c == 0).expect("reaches zero");
        // Not before the last request is a whole downscale period (30 s) old.
        assert!((zero_at as u32 + 1) * 5 >= 35, "{counts:?}");
        a.observe(Sample {
            at: 80.0,
            in_flight: 1.0,
        });
        assert_eq!(a.decide(80.0, 0), 1, "a waiting request asks for a replica");
    }
}
