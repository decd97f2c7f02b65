//! A value read without a lock and changed by swapping in a changed copy, one change at a
//! time: for what the gateway reads on every request and a deploy changes rarely (the route
//! table, a replica set's members). Readers share no lock word, so the connection threads do
//! not pass one back and forth.

use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Guard};

#[derive(Debug, Default)]
pub struct Swapped<T> {
    current: ArcSwap<T>,
    changing: Mutex<()>,
}

impl<T: Clone> Swapped<T> {
    pub fn new(value: T) -> Swapped<T> {
        Swapped {
            current: ArcSwap::from_pointee(value),
            changing: Mutex::default(),
        }
    }

    /// The value now (a reader never waits).
    pub fn load(&self) -> Guard<Arc<T>> {
        self.current.load()
    }

    /// The value once any change under way has been swapped in.
    pub fn settled(&self) -> Arc<T> {
        let _changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        self.current.load_full()
    }

    /// Applies `change` to a copy of the value and swaps the copy in; changes happen one at a
    /// time, so none is lost.
    pub fn change<R>(&self, change: impl FnOnce(&mut T) -> R) -> R {
        let _changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let mut copy = T::clone(&self.current.load());
        let result = change(&mut copy);
        self.current.store(Arc::new(copy));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::Swapped;
    use std::sync::Arc;

    #[test]
    fn changes_from_many_threads_are_all_kept() {
        let swapped = Arc::new(Swapped::new(Vec::<u32>::new()));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let swapped = swapped.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        swapped.change(|v| v.push(t * 100 + i));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(swapped.settled().len(), 800);
        assert_eq!(swapped.load().len(), 800);
    }
}
