//! The part of a streaming STT vendor that differs from the others: its wire protocol, with no
//! I/O. The generic session driver owns the socket and everything every vendor shares (connect
//! and stall timeouts, reconnect with buffered audio and call-relative times, keep-alive timing,
//! the close handshake) and asks an [`SttProtocol`] only for bytes to send and for the meaning
//! of what came back. Adding an STT provider is one file implementing this trait plus one line
//! in the registry.

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use crate::error::ProviderError;
use crate::stt::SttEvent;

/// Outcome of parsing one server message.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// A transcription message (results, even empty ones; speech start; utterance end; a turn
    /// event): the provider is at work. Only these keep the stall timer from firing.
    Transcription,
    /// The provider accepted the start of the stream (Speechmatics `RecognitionStarted`,
    /// ElevenLabs `session_started`). Audio held back by a protocol whose
    /// [`SttProtocol::waits_for_ready`] is true flows from now on.
    Ready,
    /// The provider's last message of the stream (Deepgram `Metadata`, Speechmatics
    /// `EndOfTranscript`, Soniox `finished`): the server closes next.
    EndOfStream,
    /// A message of the protocol that says nothing about transcription (a notice, a type this
    /// adapter does not know).
    Other,
    /// The provider reported an error that ends the session: no reconnect can fix it (bad key,
    /// unknown model, a refused configuration). The driver reports `SttEvent::Failed` with it.
    Fatal(ProviderError),
    /// Not a message of the protocol (malformed JSON, wrong shape): ignored, and it does not
    /// count as the provider answering.
    Unparseable,
}

/// One vendor's streaming STT wire protocol. Implementations are plain state machines: every
/// method returns at once, none touches the network. One value lives for one call's session and
/// is asked again for its start messages on every reconnect.
pub trait SttProtocol: Send + 'static {
    /// Provider name as the record spells it (`deepgram`, `speechmatics`…), for errors and logs.
    fn provider(&self) -> &'static str;

    /// The websocket URL to connect to, query included (same for every reconnect).
    fn url(&self) -> &Url;

    /// Headers of the upgrade request (usually the key). Values are secrets: never logged.
    fn headers(&self) -> Vec<(&'static str, String)>;

    /// Response header that carries the provider's error text on a refused upgrade
    /// (Deepgram `dg-error`); `None` reads the body only.
    fn error_header(&self) -> Option<&'static str> {
        None
    }

    /// Messages sent right after each (re)connect, before any audio (Speechmatics
    /// `StartRecognition`, the Soniox start request). Empty for protocols configured by the URL.
    fn start_messages(&mut self) -> Vec<Message> {
        Vec::new()
    }

    /// Whether the provider sends transcription messages while the caller is silent (Deepgram's
    /// empty results). When false (ElevenLabs Scribe and Soniox answer only speech), a silent
    /// caller is not a stalled socket: the driver does not watch for stalls, and relies on the
    /// socket closing to notice a dead provider.
    fn answers_silence(&self) -> bool {
        true
    }

    /// Whether audio must wait until [`SttProtocol::parse_text`] returned [`Parsed::Ready`] on
    /// this socket (Speechmatics refuses audio before `RecognitionStarted`). The driver buffers
    /// it meanwhile, like audio during a reconnect.
    fn waits_for_ready(&self) -> bool {
        false
    }

    /// Frame one chunk of caller audio (in the session's encoding and rate): a binary frame for
    /// most vendors, base64 inside JSON for ElevenLabs. Called for every 20 ms frame: keep it
    /// cheap (a binary frame is `Message::Binary(audio)`, no copy).
    fn audio(&mut self, audio: Bytes) -> Message;

    /// The message that keeps an idle socket open, or `None` when the protocol needs none
    /// (websocket pings, which the driver does not send, are enough).
    fn keepalive(&mut self) -> Option<Message>;

    /// Ask for final results of everything sent so far (Deepgram `Finalize`, Flux
    /// `ForceEndTurn`, Speechmatics `ForceEndOfUtterance`, Soniox `finalize`, ElevenLabs
    /// `commit`). `None` when the protocol has no such message.
    fn finalize(&mut self) -> Option<Message>;

    /// End the stream gracefully: the provider sends its last results, then closes
    /// (Deepgram `CloseStream`, Speechmatics `EndOfStream`, Soniox empty frame). `None` closes
    /// the websocket directly.
    fn close(&mut self) -> Option<Message>;

    /// Parse one server text message into neutral events. `offset_s` is the call time (s) at
    /// which this socket's stream time 0 lies: add it to every time the provider reports, so
    /// times stay call-relative across reconnects.
    fn parse_text(&mut self, text: &str, offset_s: f64, out: &mut Vec<SttEvent>) -> Parsed;

    /// Parse one server binary message. No current vendor sends any; the default ignores it.
    fn parse_binary(&mut self, _data: &[u8], _offset_s: f64, _out: &mut Vec<SttEvent>) -> Parsed {
        Parsed::Unparseable
    }

    /// What a close frame from the server means: `Some(error)` when it ends the session for
    /// good (Speechmatics 4001 `not_authorised`, a policy close naming a bad model), `None`
    /// when it is a drop worth reconnecting after (the default for every code).
    fn close_error(&self, _code: u16, _reason: &str) -> Option<ProviderError> {
        None
    }
}

/// Builds the protocol of one session from its configuration; refuses what the vendor would
/// refuse (a missing key, an unknown model) before any connection is made.
pub type SttProtocolFactory =
    fn(&crate::stt::SttConfig) -> Result<Box<dyn SttProtocol>, ProviderError>;
