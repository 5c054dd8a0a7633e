//! One thread that appends every live call's spool files (recording blocks, trace slices).
//!
//! Each live call hands its spool writer a block a second for the recording and a slice a
//! second for the trace. Done with `spawn_blocking`, every hand-off woke a blocking-pool thread
//! and then the waiting task again: at 500 calls a thousand thread wake-ups a second, for writes
//! of a few KiB each into the page cache. This thread instead takes the appends in rounds: it
//! wakes for the first one, runs everything queued, then lets [`ROUND`] pass before it looks
//! again, so under load each wake-up serves every call that wrote in the meantime, and at rest
//! an append still runs at once.
//!
//! Only appends run here. Finalising a recording (header fix-up, transcoding, `fsync`) or
//! putting a trace back together can take long and stays on the blocking pool, so one call's
//! end never holds up every other call's writes. A disk that stalls holds up the appends of
//! every call on this instance alike; each call's own bounded queue then fills and it drops
//! what it cannot write (counted), exactly as it did behind a stalled blocking pool.

use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::oneshot;

/// How long the thread lets appends gather after a round before it runs the next one.
pub const ROUND: Duration = Duration::from_millis(25);

/// An append, ready to run.
type Job = Box<dyn FnOnce() + Send>;

/// The thread's queue, made with the thread on first use.
static QUEUE: OnceLock<mpsc::Sender<Job>> = OnceLock::new();

/// Why an append did not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum SpoolThreadError {
    /// The append panicked (the thread goes on with the next one).
    #[error("the spool writer thread's job panicked")]
    Panicked,
    /// The thread could not be started.
    #[error("the spool writer thread could not start: {0}")]
    Start(String),
}

/// Runs `append` on the spool thread and returns what it returned.
pub async fn run<R, F>(append: F) -> Result<R, SpoolThreadError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let (done, result) = oneshot::channel();
    let job: Job = Box::new(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(append));
        let _ = done.send(outcome.map_err(|_| SpoolThreadError::Panicked));
    });
    queue()?
        .send(job)
        .map_err(|_| SpoolThreadError::Start("the thread is gone".into()))?;
    result.await.unwrap_or(Err(SpoolThreadError::Panicked))
}

fn queue() -> Result<&'static mpsc::Sender<Job>, SpoolThreadError> {
    if let Some(q) = QUEUE.get() {
        return Ok(q);
    }
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("spool-writer".into())
        .spawn(move || run_rounds(&rx))
        .map_err(|e| SpoolThreadError::Start(e.to_string()))?;
    // Two first users at once: one thread's sender is kept, the other thread ends with its
    // queue (its receiver sees no sender).
    Ok(QUEUE.get_or_init(|| tx))
}

fn run_rounds(jobs: &mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        first();
        while let Ok(job) = jobs.try_recv() {
            job();
        }
        std::thread::sleep(ROUND);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_run_in_order_and_return_their_result() {
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let runs: Vec<_> = (0..50)
            .map(|i| {
                let order = order.clone();
                run(move || {
                    order.lock().map(|mut o| o.push(i)).ok();
                    i * 2
                })
            })
            .collect();
        let mut results = Vec::new();
        for r in runs {
            results.push(r.await.ok());
        }
        assert_eq!(results, (0..50).map(|i| Some(i * 2)).collect::<Vec<_>>());
        let order = order.lock().map(|o| o.clone()).unwrap_or_default();
        assert_eq!(order, (0..50).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_panicking_append_is_an_error_and_the_thread_goes_on() {
        let failed = run(|| -> u8 { panic!("disk on fire") }).await;
        assert!(
            matches!(failed, Err(SpoolThreadError::Panicked)),
            "{failed:?}"
        );
        assert_eq!(run(|| 7).await.ok(), Some(7));
    }
}
