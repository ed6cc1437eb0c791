//! A burst of changes is computed once: a relist, or a rollout's thousands
//! of pod and slice events, would otherwise recompute every Service's
//! endpoints per event. A burst is over once nothing came for [`QUIET`], and
//! is cut after [`LONGEST`], so a cluster that never quiets still gets its
//! endpoints updated.

use std::time::Duration;

use futures::{Stream, StreamExt};

/// Nothing new for this long: the burst is over.
pub const QUIET: Duration = Duration::from_millis(50);
/// A burst that never quiets is cut after this long.
pub const LONGEST: Duration = Duration::from_secs(1);

/// How a burst ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Nothing came for [`QUIET`].
    Quiet,
    /// [`LONGEST`] passed while changes kept coming.
    Cut,
    /// The stream ended.
    Closed,
}

/// Hands `apply` each item of `items` until the burst ends.
pub async fn gather<S, T>(items: &mut S, mut apply: impl FnMut(T)) -> End
where
    S: Stream<Item = T> + Unpin,
{
    let cut = tokio::time::sleep(LONGEST);
    tokio::pin!(cut);
    loop {
        tokio::select! {
            biased;
            () = &mut cut => return End::Cut,
            next = tokio::time::timeout(QUIET, items.next()) => match next {
                Ok(Some(item)) => apply(item),
                Ok(None) => return End::Closed,
                Err(_) => return End::Quiet,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::UnboundedReceiverStream;

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_gathered_until_it_quiets() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut items = UnboundedReceiverStream::new(rx);
        for i in 0..3 {
            tx.send(i).unwrap();
        }
        // One more, well after the burst: not part of it.
        let late = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(QUIET * 4).await;
            late.send(99).unwrap();
        });
        let mut got = Vec::new();
        assert_eq!(gather(&mut items, |i| got.push(i)).await, End::Quiet);
        assert_eq!(got, [0, 1, 2]);
        // The late one is queued by now.
        tokio::time::sleep(QUIET * 4).await;
        let mut next = Vec::new();
        assert_eq!(gather(&mut items, |i| next.push(i)).await, End::Quiet);
        assert_eq!(next, [99]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_that_never_quiets_is_cut() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut items = UnboundedReceiverStream::new(rx);
        // A change every QUIET / 2, for ten times LONGEST.
        let steps = 20 * (LONGEST.as_millis() / QUIET.as_millis()) as u32;
        let producer = tokio::spawn(async move {
            for i in 0..steps {
                if tx.send(i).is_err() {
                    return;
                }
                tokio::time::sleep(QUIET / 2).await;
            }
        });
        let mut got = 0;
        assert_eq!(gather(&mut items, |_| got += 1).await, End::Cut);
        assert!(got > 1, "gathered what came before the cut");
        assert!(got < steps, "cut before the changes stopped");
        drop(items);
        let _ = producer.await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_stream_ends_the_burst() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut items = UnboundedReceiverStream::new(rx);
        tx.send(1).unwrap();
        drop(tx);
        let mut got = Vec::new();
        assert_eq!(gather(&mut items, |i| got.push(i)).await, End::Closed);
        assert_eq!(got, [1]);
    }
}
