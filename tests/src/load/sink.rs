//! Where a connection's samples go: a local buffer handed over in batches to a
//! per-connection shared list, so readers see them soon and writers rarely lock.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::sample::Sample;

/// Hand the buffer over at least this often...
const FLUSH_EVERY: Duration = Duration::from_millis(10);
/// ...or when it holds this many samples.
const FLUSH_SIZE: usize = 1024;

/// The samples of one connection that readers can see.
#[derive(Debug, Default)]
pub(crate) struct SharedSamples {
    samples: Mutex<Vec<Sample>>,
}

impl SharedSamples {
    fn lock(&self) -> MutexGuard<'_, Vec<Sample>> {
        // A panic while holding this lock cannot leave the Vec inconsistent.
        self.samples.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Clones of the samples completed at or after `since`.
    pub(crate) fn copy_since(&self, since: Duration, out: &mut Vec<Sample>) {
        let samples = self.lock();
        // Samples of one connection are in completion order.
        let first = samples.partition_point(|s| s.at < since);
        out.extend_from_slice(&samples[first..]);
    }

    /// Move every sample out.
    pub(crate) fn take(&self) -> Vec<Sample> {
        std::mem::take(&mut *self.lock())
    }
}

/// The writer side, owned by one connection task.
#[derive(Debug)]
pub(crate) struct SampleBuffer {
    shared: Arc<SharedSamples>,
    local: Vec<Sample>,
    last_flush: Instant,
}

impl SampleBuffer {
    pub(crate) fn new(shared: Arc<SharedSamples>) -> Self {
        Self {
            shared,
            local: Vec::with_capacity(64),
            last_flush: Instant::now(),
        }
    }

    /// Record a sample; `now` is the time it completed.
    pub(crate) fn push(&mut self, sample: Sample, now: Instant) {
        self.local.push(sample);
        if self.local.len() >= FLUSH_SIZE || now.duration_since(self.last_flush) >= FLUSH_EVERY {
            self.flush(now);
        }
    }

    /// Hand everything buffered over to readers.
    pub(crate) fn flush(&mut self, now: Instant) {
        self.last_flush = now;
        if !self.local.is_empty() {
            self.shared.lock().append(&mut self.local);
        }
    }
}

impl Drop for SampleBuffer {
    fn drop(&mut self) {
        self.flush(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::sample::sample;

    #[test]
    fn readers_see_samples_after_a_flush_and_filter_by_time() {
        let shared = Arc::new(SharedSamples::default());
        let mut buffer = SampleBuffer::new(shared.clone());
        let t0 = Instant::now();
        buffer.push(sample(1, 200, None, 1), t0);
        buffer.push(sample(2, 200, None, 1), t0);
        let mut seen = Vec::new();
        shared.copy_since(Duration::ZERO, &mut seen);
        assert!(seen.is_empty(), "buffered, not flushed yet");
        buffer.push(sample(3, 200, None, 1), t0 + FLUSH_EVERY);
        shared.copy_since(Duration::from_millis(2), &mut seen);
        assert_eq!(seen.len(), 2);
        buffer.push(sample(4, 200, None, 1), t0 + FLUSH_EVERY);
        drop(buffer);
        assert_eq!(shared.take().len(), 4, "dropping flushes");
    }
}
