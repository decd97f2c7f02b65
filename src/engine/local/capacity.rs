//! What the machine has for replicas that ask for resources (`compute.cpu`, `compute.mem`,
//! `compute.gpu`, whole GPUs: see `gpus.rs`):
//! each such replica holds a reservation while it runs, and one that does not fit what is free
//! waits (`pending`, which `cortex get` shows as `compute unavailable`) until another gives its
//! reservation back, as a cluster scheduler keeps a pod pending. Replicas that ask for nothing
//! reserve nothing. The machine's CPUs and memory can be set with `CORTEX_ENGINE_CPUS` (e.g.
//! `1.5`) and `CORTEX_ENGINE_MEMORY_MIB`.

use std::sync::{Arc, Mutex};

use crate::api::NEVER_FITS;
use tokio::sync::Notify;

/// A reservation request: millicores, bytes and whole GPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Need {
    pub cpu_millis: u64,
    pub mem_bytes: u64,
    pub gpus: u32,
}

impl Need {
    pub(super) fn is_empty(self) -> bool {
        self.cpu_millis == 0 && self.mem_bytes == 0 && self.gpus == 0
    }
}

#[derive(Debug, Default)]
struct Held {
    need: Need,
    /// The GPUs reserved, by id.
    gpus: Vec<String>,
}

#[derive(Debug)]
struct Inner {
    /// CPU and memory (`total.gpus` is `gpus.len()`).
    total: Need,
    /// The machine's GPUs, by id.
    gpus: Vec<String>,
    reserved: Mutex<Held>,
    /// Told when a reservation is given back.
    freed: Notify,
}

/// The machine's capacity, shared by every replica of the engine.
#[derive(Debug, Clone)]
pub(super) struct Capacity(Arc<Inner>);

impl Capacity {
    pub(super) fn new(total: Need, gpus: Vec<String>) -> Capacity {
        Capacity(Arc::new(Inner {
            total: Need {
                gpus: gpus.len() as u32,
                ..total
            },
            gpus,
            reserved: Mutex::new(Held::default()),
            freed: Notify::new(),
        }))
    }

    /// True when the machine has GPUs to hand out.
    pub(super) fn has_gpus(&self) -> bool {
        !self.0.gpus.is_empty()
    }

    /// This machine's CPUs and memory, or what `CORTEX_ENGINE_CPUS` and
    /// `CORTEX_ENGINE_MEMORY_MIB` say.
    pub(super) fn of_this_machine() -> Capacity {
        let cpus = std::env::var("CORTEX_ENGINE_CPUS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .map(|c| (c * 1000.0) as u64)
            .unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, |n| n.get() as u64) * 1000
            });
        let mem = std::env::var("CORTEX_ENGINE_MEMORY_MIB")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(|m| m << 20)
            .unwrap_or_else(total_memory);
        Capacity::new(
            Need {
                cpu_millis: cpus,
                mem_bytes: mem,
                gpus: 0,
            },
            super::gpus::of_this_machine(),
        )
    }

    /// A reservation of `need` if it fits what is free, or why not.
    pub(super) fn try_reserve(&self, need: Need) -> Result<Reservation, String> {
        let mut reserved = self.0.reserved.lock().unwrap_or_else(|p| p.into_inner());
        let total = self.0.total;
        let free = Need {
            cpu_millis: total.cpu_millis.saturating_sub(reserved.need.cpu_millis),
            mem_bytes: total.mem_bytes.saturating_sub(reserved.need.mem_bytes),
            gpus: total.gpus.saturating_sub(reserved.need.gpus),
        };
        let fits = need.cpu_millis <= free.cpu_millis
            && need.mem_bytes <= free.mem_bytes
            && need.gpus <= free.gpus;
        if fits {
            let gpus: Vec<String> = self
                .0
                .gpus
                .iter()
                .filter(|id| !reserved.gpus.contains(id))
                .take(need.gpus as usize)
                .cloned()
                .collect();
            reserved.need.cpu_millis += need.cpu_millis;
            reserved.need.mem_bytes += need.mem_bytes;
            reserved.need.gpus += need.gpus;
            reserved.gpus.extend(gpus.iter().cloned());
            return Ok(Reservation {
                capacity: self.clone(),
                need,
                gpus,
            });
        }
        let cpu = |m: u64| format!("{}", m as f64 / 1000.0);
        let mib = |b: u64| format!("{}Mi", b >> 20);
        let mut short = Vec::new();
        if need.cpu_millis > free.cpu_millis {
            short.push(format!(
                "{} cpu (compute.cpu) while {} of this machine's {} are free",
                cpu(need.cpu_millis),
                cpu(free.cpu_millis),
                cpu(total.cpu_millis)
            ));
        }
        if need.mem_bytes > free.mem_bytes {
            short.push(format!(
                "{} of memory (compute.mem) while {} of {} are free",
                mib(need.mem_bytes),
                mib(free.mem_bytes),
                mib(total.mem_bytes)
            ));
        }
        if need.gpus > free.gpus {
            short.push(format!(
                "{} gpu (compute.gpu) while {} of this machine's {} are free",
                need.gpus, free.gpus, total.gpus
            ));
        }
        let never = need.cpu_millis > total.cpu_millis
            || need.mem_bytes > total.mem_bytes
            || need.gpus > total.gpus;
        let fix = if never {
            format!("{NEVER_FITS}; lower compute in cortex.yaml")
        } else {
            "it starts when other replicas give theirs back; delete or scale down an api, or lower compute in cortex.yaml".to_string()
        };
        Err(format!(
            "waiting for compute: it needs {}; {fix}",
            short.join(" and ")
        ))
    }

    /// Resolves when a reservation is given back; `enable` it before looking at what is free.
    pub(super) fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.0.freed.notified()
    }
}

/// Resources held by a running replica, given back when dropped.
#[derive(Debug)]
pub(super) struct Reservation {
    capacity: Capacity,
    need: Need,
    /// The ids of its GPUs.
    pub(super) gpus: Vec<String>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let inner = &self.capacity.0;
        {
            let mut reserved = inner.reserved.lock().unwrap_or_else(|p| p.into_inner());
            reserved.need.cpu_millis -= self.need.cpu_millis;
            reserved.need.mem_bytes -= self.need.mem_bytes;
            reserved.need.gpus -= self.need.gpus;
            reserved.gpus.retain(|id| !self.gpus.contains(id));
        }
        inner.freed.notify_waiters();
    }
}

/// The machine's memory (`MemTotal` of `/proc/meminfo`), or effectively unlimited when unknown.
fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(u64::MAX, |kib| kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_fit_what_is_free_and_give_it_back_when_dropped() {
        let c = Capacity::new(
            Need {
                cpu_millis: 2000,
                mem_bytes: 1 << 30,
                gpus: 0,
            },
            Vec::new(),
        );
        let one = Need {
            cpu_millis: 1500,
            ..Need::default()
        };
        let held = c.try_reserve(one).unwrap();
        let why = c.try_reserve(one).unwrap_err();
        assert_eq!(
            why,
            "waiting for compute: it needs 1.5 cpu (compute.cpu) while 0.5 of this machine's 2 are free; it starts when other replicas give theirs back; delete or scale down an api, or lower compute in cortex.yaml"
        );
        drop(held);
        assert!(c.try_reserve(one).is_ok());
        let too_big = Need {
            mem_bytes: 2 << 30,
            ..Need::default()
        };
        assert!(c
            .try_reserve(too_big)
            .unwrap_err()
            .ends_with("it can never start here; lower compute in cortex.yaml"));
        assert!(c.try_reserve(Need::default()).is_ok());
    }

    #[test]
    fn gpus_are_handed_out_whole_and_come_back() {
        let c = Capacity::new(Need::default(), vec!["0".into(), "1".into()]);
        let one = Need {
            gpus: 1,
            ..Need::default()
        };
        let a = c.try_reserve(one).unwrap();
        let b = c.try_reserve(one).unwrap();
        assert_eq!(
            (a.gpus.clone(), b.gpus.clone()),
            (vec!["0".into()], vec!["1".into()])
        );
        let why = c.try_reserve(one).unwrap_err();
        assert!(
            why.contains("1 gpu (compute.gpu) while 0 of this machine's 2 are free"),
            "{why}"
        );
        drop(a);
        assert_eq!(c.try_reserve(one).unwrap().gpus, vec!["0".to_string()]);
        let three = Need {
            gpus: 3,
            ..Need::default()
        };
        assert!(c
            .try_reserve(three)
            .unwrap_err()
            .contains("it can never start here"));
    }

    #[test]
    fn this_machine_has_cpus_and_memory() {
        let c = Capacity::of_this_machine();
        assert!(c.0.total.cpu_millis >= 1000);
        assert!(c.0.total.mem_bytes > 1 << 20);
    }
}
