//! What the machine has for replicas that ask for resources (`compute.cpu`, `compute.mem`):
//! each such replica holds a reservation while it runs, and one that does not fit what is free
//! waits (`pending`, which `cortex get` shows as `compute unavailable`) until another gives its
//! reservation back, as a cluster scheduler keeps a pod pending. Replicas that ask for nothing
//! reserve nothing. The machine's CPUs and memory can be set with `CORTEX_ENGINE_CPUS` (e.g.
//! `1.5`) and `CORTEX_ENGINE_MEMORY_MIB`.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// A reservation request: millicores and bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Need {
    pub cpu_millis: u64,
    pub mem_bytes: u64,
}

impl Need {
    pub(super) fn is_empty(self) -> bool {
        self.cpu_millis == 0 && self.mem_bytes == 0
    }
}

#[derive(Debug)]
struct Inner {
    total: Need,
    reserved: Mutex<Need>,
    /// Told when a reservation is given back.
    freed: Notify,
}

/// The machine's capacity, shared by every replica of the engine.
#[derive(Debug, Clone)]
pub(super) struct Capacity(Arc<Inner>);

impl Capacity {
    pub(super) fn new(total: Need) -> Capacity {
        Capacity(Arc::new(Inner {
            total,
            reserved: Mutex::new(Need::default()),
            freed: Notify::new(),
        }))
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
        Capacity::new(Need {
            cpu_millis: cpus,
            mem_bytes: mem,
        })
    }

    /// A reservation of `need` if it fits what is free, or why not.
    pub(super) fn try_reserve(&self, need: Need) -> Result<Reservation, String> {
        let mut reserved = self.0.reserved.lock().unwrap_or_else(|p| p.into_inner());
        let total = self.0.total;
        let free = Need {
            cpu_millis: total.cpu_millis.saturating_sub(reserved.cpu_millis),
            mem_bytes: total.mem_bytes.saturating_sub(reserved.mem_bytes),
        };
        if need.cpu_millis <= free.cpu_millis && need.mem_bytes <= free.mem_bytes {
            reserved.cpu_millis += need.cpu_millis;
            reserved.mem_bytes += need.mem_bytes;
            return Ok(Reservation {
                capacity: self.clone(),
                need,
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
        let fix = if need.cpu_millis > total.cpu_millis || need.mem_bytes > total.mem_bytes {
            "it can never start here; lower compute in cortex.yaml"
        } else {
            "it starts when other replicas give theirs back; delete or scale down an api, or lower compute in cortex.yaml"
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
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let inner = &self.capacity.0;
        {
            let mut reserved = inner.reserved.lock().unwrap_or_else(|p| p.into_inner());
            reserved.cpu_millis -= self.need.cpu_millis;
            reserved.mem_bytes -= self.need.mem_bytes;
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
        let c = Capacity::new(Need {
            cpu_millis: 2000,
            mem_bytes: 1 << 30,
        });
        let one = Need {
            cpu_millis: 1500,
            mem_bytes: 0,
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
            cpu_millis: 0,
            mem_bytes: 2 << 30,
        };
        assert!(c
            .try_reserve(too_big)
            .unwrap_err()
            .ends_with("it can never start here; lower compute in cortex.yaml"));
        assert!(c.try_reserve(Need::default()).is_ok());
    }

    #[test]
    fn this_machine_has_cpus_and_memory() {
        let c = Capacity::of_this_machine();
        assert!(c.0.total.cpu_millis >= 1000);
        assert!(c.0.total.mem_bytes > 1 << 20);
    }
}
