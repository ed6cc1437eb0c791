//! The drain in time: the signal, the propagation window, inbound closing, and
//! the hard cap over all of it.

use std::future::Future;

use tokio::time::{sleep_until, Instant};

use super::{Drain, Phase, Settings};

/// Serves `inbound` (the inbound listeners: they stop accepting when the drain
/// reaches [`Phase::ClosingInbound`] and resolve with the connections still
/// open when they gave up) and, once `trigger` fires, drains: leaving for the
/// propagation window, then inbound closes, then [`Phase::Exiting`] once
/// inbound has ended or the hard cap is reached. What waits for `Exiting`
/// (outbound, admin) closes after that.
pub async fn sequence(
    drain: &Drain,
    settings: Settings,
    trigger: impl Future<Output = ()>,
    inbound: impl Future<Output = usize>,
) {
    let timeline = async {
        trigger.await;
        if !drain.begin(settings.timeout) {
            return;
        }
        tracing::info!(
            propagation_ms = settings.propagation.as_millis() as u64,
            timeout_ms = settings.timeout.as_millis() as u64,
            "drain: leaving the mesh; inbound is still served for the propagation window"
        );
        let deadline = drain.deadline().unwrap_or_else(Instant::now);
        sleep_until((Instant::now() + settings.propagation).min(deadline)).await;
        drain.advance(Phase::ClosingInbound);
        tracing::info!(
            elapsed_ms = drain.elapsed_ms(),
            "drain: propagation window over; inbound closed (HTTP/1 closes after each response, HTTP/2 gets GOAWAY), waiting for its requests and connections"
        );
    };
    let closing = async {
        tokio::pin!(inbound);
        let capped = async {
            let deadline = drain.reached(Phase::ClosingInbound).await;
            sleep_until(deadline).await;
        };
        let open = tokio::select! {
            open = &mut inbound => open,
            () = capped => usize::MAX,
        };
        // Nothing moves on before the drain got here, whatever ended early.
        drain.reached(Phase::ClosingInbound).await;
        match open {
            0 => tracing::info!(
                elapsed_ms = drain.elapsed_ms(),
                "drain: the last inbound connection ended"
            ),
            usize::MAX => tracing::warn!(
                elapsed_ms = drain.elapsed_ms(),
                "drain: hard cap reached while inbound was still draining"
            ),
            open => tracing::warn!(
                elapsed_ms = drain.elapsed_ms(),
                open,
                "drain: hard cap reached with inbound connections still open"
            ),
        }
        drain.advance(Phase::Exiting);
        tracing::info!(
            elapsed_ms = drain.elapsed_ms(),
            "drain: inbound done; outbound and admin close"
        );
    };
    tokio::join!(timeline, closing);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    struct Run {
        drain: Arc<Drain>,
        trigger: Option<oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
    }

    /// A drain whose inbound side takes `inbound_takes` to finish once it is
    /// asked to close.
    fn start(settings: Settings, inbound_takes: Duration) -> Run {
        let drain = Arc::new(Drain::default());
        let (trigger, fired) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let drain = drain.clone();
            async move {
                let inbound = async {
                    drain.reached(Phase::ClosingInbound).await;
                    tokio::time::sleep(inbound_takes).await;
                    0
                };
                let trigger = async {
                    let _ = fired.await;
                };
                sequence(&drain, settings, trigger, inbound).await
            }
        });
        Run {
            drain,
            trigger: Some(trigger),
            task,
        }
    }

    async fn at(ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    fn settings(propagation_ms: u64, timeout_ms: u64) -> Settings {
        Settings {
            propagation: Duration::from_millis(propagation_ms),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn inbound_is_served_for_the_window_then_closes_then_outbound_goes() {
        let mut run = start(settings(2000, 30_000), Duration::from_millis(500));
        at(1000).await;
        assert_eq!(
            run.drain.phase(),
            Phase::Serving,
            "nothing before the signal"
        );
        run.trigger.take().unwrap().send(()).unwrap();
        at(1).await;
        assert_eq!(run.drain.phase(), Phase::Leaving);
        at(1998).await;
        assert_eq!(run.drain.phase(), Phase::Leaving, "still in the window");
        at(2).await;
        assert_eq!(run.drain.phase(), Phase::ClosingInbound);
        at(498).await;
        assert_eq!(
            run.drain.phase(),
            Phase::ClosingInbound,
            "requests in flight"
        );
        at(2).await;
        assert_eq!(run.drain.phase(), Phase::Exiting);
        run.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_hard_cap_ends_an_inbound_drain_that_does_not_finish() {
        let mut run = start(settings(1000, 3000), Duration::from_secs(3600));
        run.trigger.take().unwrap().send(()).unwrap();
        at(2999).await;
        assert_eq!(run.drain.phase(), Phase::ClosingInbound);
        at(2).await;
        assert_eq!(run.drain.phase(), Phase::Exiting, "at the cap");
        run.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn no_window_closes_inbound_at_once() {
        let mut run = start(settings(0, 1000), Duration::ZERO);
        run.trigger.take().unwrap().send(()).unwrap();
        run.task.await.unwrap();
        assert_eq!(run.drain.phase(), Phase::Exiting);
    }
}
