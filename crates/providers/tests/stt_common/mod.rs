//! Helpers shared by the STT adapter tests: caller audio, paced sending, waiting for events.

use std::time::Duration;

use switchboard_netguard::OutboundPolicy;
use switchboard_providers::stt::{SttEvent, SttSession};
use switchboard_testkit::deepgram::mulaw;

/// Generous bound so a loaded machine does not fail tests; never a speed assertion.
pub const WAIT: Duration = Duration::from_secs(15);

/// `ms` of voice-like µ-law, starting at sample `start_sample` of the signal.
pub fn voice(ms: u64, start_sample: u64) -> Vec<u8> {
    mulaw::voice_like(start_sample, (ms * 8) as usize)
}

/// `ms` of µ-law silence.
pub fn silence(ms: u64) -> Vec<u8> {
    vec![mulaw::SILENCE; (ms * 8) as usize]
}

/// Send in 100 ms chunks with a yield in between, like a paced call but faster.
pub async fn send(session: &mut SttSession, audio: &[u8]) {
    for chunk in audio.chunks(800) {
        assert!(session.send_audio(chunk), "audio queue overflowed");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The next event, or `None` when the stream ended or [`WAIT`] passed.
pub async fn next_event(session: &mut SttSession) -> Option<SttEvent> {
    tokio::time::timeout(WAIT, session.events.recv())
        .await
        .ok()
        .flatten()
}

/// Collect events until one matches `stop` (inclusive).
pub async fn collect_until(
    session: &mut SttSession,
    stop: impl Fn(&SttEvent) -> bool,
) -> Vec<SttEvent> {
    let mut out = Vec::new();
    while let Some(ev) = next_event(session).await {
        let done = stop(&ev);
        out.push(ev);
        if done {
            return out;
        }
    }
    panic!("event stream ended or timed out; got {out:?}");
}

/// The fakes listen on 127.0.0.1: an outbound policy that allows exactly loopback.
pub fn loopback() -> OutboundPolicy {
    OutboundPolicy::new("127.0.0.1,::1".parse().expect("allowlist"))
}
