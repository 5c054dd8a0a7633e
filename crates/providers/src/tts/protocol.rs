//! The TTS protocol trait: what one vendor's streaming websocket says, as a sans-IO state
//! machine. The generic driver ([`super::driver`]) owns the socket, the timers and the context
//! book-keeping; a protocol only turns session commands into messages and server messages into
//! neutral [`Step`]s. Adding a TTS provider is one file implementing this trait plus a
//! `connect` that builds it (see `docs/ARCHITECTURE.md`, "How to add a provider").

use bytes::Bytes;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use super::Alignment;
use crate::error::ProviderError;

/// One thing a protocol wants done, in order: send a message or report what happened to a
/// context. Contexts are the session's reply ids (the core's generation ids).
#[derive(Debug)]
pub enum Step {
    /// Send this message on the socket (the context's own socket in per-context mode).
    Send(Message),
    /// Audio of `context`: raw 8 kHz µ-law. Empty audio with an alignment carries timings only.
    Audio {
        /// The reply.
        context: u64,
        /// µ-law bytes.
        mulaw: Bytes,
        /// Character timings relative to the start of this audio, when the provider gives them.
        alignment: Option<Alignment>,
    },
    /// The server made progress on `context` without audio (e.g. a flush was answered): its
    /// stall deadline is re-armed as after audio.
    Progress {
        /// The reply.
        context: u64,
    },
    /// Every audio chunk of an ended `context` has been delivered.
    Done {
        /// The finished reply.
        context: u64,
    },
    /// `context` failed (or, with `None`, every live context); the socket stays open.
    Failed {
        /// The reply, or `None` for all.
        context: Option<u64>,
        /// Why.
        error: ProviderError,
    },
    /// The socket is unusable: the driver drops it, fails every live context and the next
    /// reply reconnects.
    Broken(ProviderError),
}

/// One vendor's streaming TTS protocol. Every method is synchronous and does no I/O.
pub trait TtsProtocol: Send + Sync + 'static {
    /// Provider name used in errors and logs.
    fn provider(&self) -> &'static str;
    /// The websocket URL (with every query parameter mapped from the configuration).
    fn url(&self) -> &Url;
    /// Handshake headers (authentication, API version). Values are secrets: never logged.
    fn headers(&self) -> Vec<(&'static str, String)>;
    /// The handshake response header carrying an error text, if the vendor has one.
    fn error_header(&self) -> Option<&'static str> {
        None
    }
    /// One socket per context instead of one per session (ElevenLabs' single-context
    /// fallback): the driver opens a socket when a context opens and drops it when it ends.
    fn socket_per_context(&self) -> bool {
        false
    }
    /// A context opens (before its first text).
    fn open(&mut self, context: u64) -> Vec<Step>;
    /// Text of `context`, to be synthesised as soon as the vendor allows.
    fn text(&mut self, context: u64, text: &str) -> Vec<Step>;
    /// Synthesise what `context` has so far; the context stays open for more text.
    fn flush(&mut self, context: u64) -> Vec<Step>;
    /// No more text for `context`: its last audio is followed by [`Step::Done`].
    fn end(&mut self, context: u64) -> Vec<Step>;
    /// Barge-in: drop `context` at the vendor. Its later messages are ignored by the driver.
    fn cancel(&mut self, context: u64) -> Vec<Step>;
    /// The message that ends the session politely before the close frame, if any.
    fn close(&mut self) -> Option<Message>;
    /// One server message; `socket_context` names the context in per-context mode.
    fn parse(&mut self, socket_context: Option<u64>, message: Message) -> Vec<Step>;
    /// The socket was dropped (stall, network, [`Step::Broken`]): forget per-socket state.
    fn socket_lost(&mut self) {}
    /// `context` still owes audio for text already handed to the vendor (audio or progress
    /// then re-arms its stall deadline even before the reply ended).
    fn owes_audio(&self, _context: u64) -> bool {
        false
    }
    /// When the protocol next wants [`TtsProtocol::wake`] (e.g. a rate-limited flush).
    fn wake_at(&self) -> Option<Instant> {
        None
    }
    /// Its timer fired.
    fn wake(&mut self, _now: Instant) -> Vec<Step> {
        Vec::new()
    }
}

/// Whether an error text reads like a key or quota problem (not worth retrying).
pub(crate) fn fatal_text(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "quota",
        "unauthorized",
        "invalid api key",
        "auth",
        "permission",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

/// `ctx-<n>`: the context id sent to vendors that take client-chosen ids.
pub(crate) fn context_name(context: u64) -> String {
    format!("ctx-{context}")
}

/// The reply id of a `ctx-<n>` context id.
pub(crate) fn context_from_name(name: &str) -> Option<u64> {
    name.strip_prefix("ctx-").and_then(|n| n.parse().ok())
}

/// A text chunk ending with exactly one space (vendors join continuations verbatim).
pub(crate) fn text_chunk(text: &str) -> String {
    let mut t = text.trim_end().to_owned();
    t.push(' ');
    t
}
