//! A live TrafficSplitter: which RealtimeAPI the next request goes to. The weights (percent,
//! adding up to 100) are laid out once into 100 slots, spread evenly (smooth weighted
//! round-robin), and each request takes the next slot: one atomic increment, and over any 100
//! requests each API gets exactly its weight.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::spec::Backend;

#[derive(Debug)]
pub struct Splitter {
    backends: Vec<Backend>,
    /// 100 indexes into `backends`.
    slots: Vec<usize>,
    next: AtomicUsize,
}

impl Splitter {
    pub fn new(backends: Vec<Backend>) -> Splitter {
        let total: i64 = backends.iter().map(|b| i64::from(b.weight)).sum();
        let mut current = vec![0i64; backends.len()];
        let mut slots = Vec::with_capacity(total.max(0) as usize);
        for _ in 0..total {
            for (c, b) in current.iter_mut().zip(&backends) {
                *c += i64::from(b.weight);
            }
            let Some((best, _)) = current
                .iter()
                .enumerate()
                .max_by_key(|(i, c)| (**c, -(*i as i64)))
            else {
                break;
            };
            current[best] -= total;
            slots.push(best);
        }
        Splitter {
            backends,
            slots,
            next: AtomicUsize::new(0),
        }
    }

    /// The API the next request goes to; `None` only when no API has any weight.
    pub fn pick(&self) -> Option<&str> {
        if self.slots.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        Some(&self.backends[self.slots[n]].name)
    }

    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splitter(weights: &[(&str, u32)]) -> Splitter {
        Splitter::new(
            weights
                .iter()
                .map(|(name, weight)| Backend {
                    name: name.to_string(),
                    weight: *weight,
                })
                .collect(),
        )
    }

    #[test]
    fn each_hundred_requests_follow_the_weights_exactly_and_evenly() {
        let s = splitter(&[("a", 80), ("b", 20)]);
        let picks: Vec<&str> = (0..200).map(|_| s.pick().unwrap()).collect();
        for window in picks.chunks(100) {
            assert_eq!(window.iter().filter(|p| **p == "b").count(), 20);
        }
        // Spread out: never more than four a's in a row.
        let longest_a = picks.split(|p| *p == "b").map(<[&str]>::len).max().unwrap();
        assert!(longest_a <= 4, "{picks:?}");
    }

    #[test]
    fn zero_weights_get_nothing_and_a_lone_api_gets_everything() {
        let s = splitter(&[("a", 0), ("b", 100)]);
        assert!((0..50).all(|_| s.pick() == Some("b")));
        let s = splitter(&[("a", 0)]);
        assert_eq!(s.pick(), None);
    }
}
