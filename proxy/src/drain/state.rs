//! Where the drain stands, shared by the listeners, the admin port and the
//! xDS client.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// The phases, in order; a drain only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Serving as usual.
    Serving,
    /// The control plane is told; inbound still accepts for the propagation
    /// window.
    Leaving,
    /// Inbound accepts nothing new and finishes what it holds.
    ClosingInbound,
    /// Inbound is done: outbound and admin close, then the process exits.
    Exiting,
}

impl Phase {
    const ALL: [Phase; 4] = [
        Phase::Serving,
        Phase::Leaving,
        Phase::ClosingInbound,
        Phase::Exiting,
    ];

    fn index(self) -> u8 {
        self as u8
    }

    fn from_index(i: u8) -> Phase {
        Self::ALL
            .get(usize::from(i))
            .copied()
            .unwrap_or(Phase::Exiting)
    }
}

#[derive(Debug, Clone, Copy)]
struct Progress {
    phase: Phase,
    /// When the drain began and when it must be over; set by [`Drain::begin`].
    started: Option<Instant>,
    deadline: Option<Instant>,
}

/// The drain of one proxy.
#[derive(Debug)]
pub struct Drain {
    progress: watch::Sender<Progress>,
    /// The phase again, for the request path's per-response check (one load,
    /// no lock).
    phase: AtomicU8,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            progress: watch::Sender::new(Progress {
                phase: Phase::Serving,
                started: None,
                deadline: None,
            }),
            phase: AtomicU8::new(Phase::Serving.index()),
        }
    }
}

impl Drain {
    pub fn phase(&self) -> Phase {
        Phase::from_index(self.phase.load(Ordering::Acquire))
    }

    /// From the leave on.
    pub fn is_draining(&self) -> bool {
        self.phase() >= Phase::Leaving
    }

    /// Starts the drain now, to be over within `timeout`. Returns false when it
    /// had already begun (a second signal changes nothing).
    pub fn begin(&self, timeout: Duration) -> bool {
        let now = Instant::now();
        let begun = self.progress.send_if_modified(|p| {
            if p.phase != Phase::Serving {
                return false;
            }
            p.phase = Phase::Leaving;
            p.started = Some(now);
            p.deadline = Some(now + timeout);
            true
        });
        if begun {
            self.phase.store(Phase::Leaving.index(), Ordering::Release);
        }
        begun
    }

    /// Moves on to `phase` unless the drain is there or further already.
    pub fn advance(&self, phase: Phase) {
        let moved = self.progress.send_if_modified(|p| {
            if p.phase >= phase {
                return false;
            }
            p.phase = phase;
            true
        });
        if moved {
            self.phase.fetch_max(phase.index(), Ordering::AcqRel);
        }
    }

    /// Waits until the drain reaches `phase`; returns the time by which it
    /// must be over.
    pub async fn reached(&self, phase: Phase) -> Instant {
        let mut rx = self.progress.subscribe();
        // The sender lives in `self`: it cannot be gone while we wait.
        let _ = rx.wait_for(|p| p.phase >= phase).await;
        self.deadline().unwrap_or_else(Instant::now)
    }

    /// When the drain must be over, once it has begun.
    pub fn deadline(&self) -> Option<Instant> {
        self.progress.borrow().deadline
    }

    /// Milliseconds since the drain began (0 before), for the timeline's logs.
    pub fn elapsed_ms(&self) -> u64 {
        self.progress
            .borrow()
            .started
            .map_or(0, |s| s.elapsed().as_millis() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_drain_only_moves_forward_and_begins_once() {
        let d = Drain::default();
        assert_eq!(d.phase(), Phase::Serving);
        assert!(!d.is_draining());
        assert_eq!(d.deadline(), None);
        assert!(d.begin(Duration::from_secs(30)));
        let deadline = d.deadline().unwrap();
        assert_eq!(deadline, Instant::now() + Duration::from_secs(30));
        assert!(d.is_draining());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!d.begin(Duration::from_secs(5)), "a second signal");
        assert_eq!(d.deadline(), Some(deadline), "the cap stays");
        assert_eq!(d.elapsed_ms(), 1000);
        d.advance(Phase::Exiting);
        d.advance(Phase::ClosingInbound);
        assert_eq!(d.phase(), Phase::Exiting);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_phase_returns_the_deadline() {
        let d = std::sync::Arc::new(Drain::default());
        let waiting = tokio::spawn({
            let d = d.clone();
            async move { d.reached(Phase::ClosingInbound).await }
        });
        d.begin(Duration::from_secs(10));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "leaving is not closing");
        d.advance(Phase::ClosingInbound);
        let deadline = waiting.await.unwrap();
        assert_eq!(Some(deadline), d.deadline());
    }
}
