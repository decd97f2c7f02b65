//! How a worker's task learns it is asked to stop: the stop channel its handle holds
//! (`Some(grace)` once a stop is requested).

use std::time::Duration;

use tokio::sync::watch;

/// Sleeps for `delay` unless a stop comes first; true when stopping.
pub(super) async fn wait_or_stop(
    stop_rx: &mut watch::Receiver<Option<Duration>>,
    delay: Duration,
) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = stopped(stop_rx) => true,
    };
    stopped || stop_requested(stop_rx)
}

/// Resolves once a stop is requested (or the handle is gone).
pub(super) async fn stopped(stop_rx: &mut watch::Receiver<Option<Duration>>) {
    let _ = stop_rx.wait_for(Option::is_some).await.map(|_| ());
}

pub(super) fn stop_requested(stop_rx: &watch::Receiver<Option<Duration>>) -> bool {
    stop_rx.borrow().is_some()
}
