//! When a connection's time is up, watched beside it (`beside.rs`) by the tick of one timer
//! per connection, so that serving a request arms no timer of its own:
//! - a head must arrive whole within `header_read_timeout` of the moment the connection
//!   began waiting for it (it opened, or it went quiet after its last answer); bytes of a head
//!   that is not complete yet (the head guard holds them) do not restart that clock, so a
//!   client sending a head byte by byte is closed at the timeout;
//! - a keep-alive connection that moves no bytes and has no request in hand for
//!   `idle_timeout` is closed.
//!
//! Both are checked at each tick, a quarter of the shorter timeout: a connection is closed
//! within a quarter past its timeout.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{interval, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::tracked::Activity;
use super::ConnectionLimits;

/// Ends when the server shuts down, or when the connection's time is up.
pub(super) async fn time_to_close(
    activity: Arc<Activity>,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let shorter = limits.idle_timeout.min(limits.header_read_timeout);
    let mut tick = interval((shorter / 4).max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut clocks = Clocks::new(activity.io.load(Ordering::Relaxed), Instant::now());
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let now = Instant::now();
                clocks.saw(&activity, now);
                if clocks.time_is_up(limits, now) {
                    return;
                }
            }
        }
    }
}

/// Since when a connection has been quiet, and since when it has been waiting for a head.
struct Clocks {
    seen_io: u64,
    quiet_since: Instant,
    waiting_since: Instant,
}

impl Clocks {
    fn new(seen_io: u64, now: Instant) -> Clocks {
        Clocks {
            seen_io,
            quiet_since: now,
            waiting_since: now,
        }
    }

    /// Takes in what the connection did since the last look.
    fn saw(&mut self, activity: &Activity, now: Instant) {
        let io = activity.io.load(Ordering::Relaxed);
        let moved = io != self.seen_io;
        self.seen_io = io;
        let handling = activity.requests.load(Ordering::Relaxed) > 0;
        if moved || handling {
            self.quiet_since = now;
        }
        // Bytes of a head still in pieces are what the header timeout is waiting on.
        if handling || (moved && !activity.head_pending.load(Ordering::Relaxed)) {
            self.waiting_since = now;
        }
    }

    fn time_is_up(&self, limits: ConnectionLimits, now: Instant) -> bool {
        now - self.quiet_since >= limits.idle_timeout
            || now - self.waiting_since >= limits.header_read_timeout
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{Activity, Clocks, ConnectionLimits};

    const LIMITS: ConnectionLimits = ConnectionLimits {
        max_connections: 8,
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
    };

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_head_sent_in_pieces_is_timed_from_when_the_connection_began_waiting() {
        let (activity, start) = (Activity::default(), Instant::now());
        let mut clocks = Clocks::new(0, start);
        for second in 1..10 {
            activity.io.fetch_add(1, Ordering::Relaxed);
            activity.head_pending.store(true, Ordering::Relaxed);
            clocks.saw(&activity, start + secs(second));
            assert!(!clocks.time_is_up(LIMITS, start + secs(second)));
        }
        clocks.saw(&activity, start + secs(10));
        assert!(clocks.time_is_up(LIMITS, start + secs(10)));
    }

    #[test]
    fn answers_and_requests_in_hand_restart_the_clocks() {
        let (activity, start) = (Activity::default(), Instant::now());
        let mut clocks = Clocks::new(0, start);
        // A request in hand for a long while (a slow prediction): not waiting for a head.
        activity.requests.store(1, Ordering::Relaxed);
        clocks.saw(&activity, start + secs(30));
        activity.requests.store(0, Ordering::Relaxed);
        // Its answer goes out.
        activity.io.fetch_add(1, Ordering::Relaxed);
        clocks.saw(&activity, start + secs(31));
        assert!(!clocks.time_is_up(LIMITS, start + secs(40)));
        // Quiet after the answer: the next head is due within the header timeout.
        clocks.saw(&activity, start + secs(41));
        assert!(clocks.time_is_up(LIMITS, start + secs(41)));
    }

    #[test]
    fn a_quiet_connection_is_closed_at_the_shorter_timeout() {
        let (activity, start) = (Activity::default(), Instant::now());
        let limits = ConnectionLimits {
            idle_timeout: secs(5),
            ..LIMITS
        };
        let mut clocks = Clocks::new(0, start);
        clocks.saw(&activity, start + secs(4));
        assert!(!clocks.time_is_up(limits, start + secs(4)));
        clocks.saw(&activity, start + secs(5));
        assert!(clocks.time_is_up(limits, start + secs(5)));
    }
}
