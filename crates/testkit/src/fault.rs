//! Fault injection shared by the provider fakes: one small description of "what goes wrong,
//! when, and how often", so a test can make any provider drop, stall, refuse or babble in the
//! middle of a call. Every fake keeps its normal behaviour until a fault is set.
//!
//! A fault waits until the fake has served `after` units of work normally, then strikes `times`
//! connections (websocket fakes) or requests (LLM fakes). What a unit is, and where a strike
//! lands, depends on the fake:
//!
//! | fake | unit of work | a live connection is struck | a new connection is struck |
//! |---|---|---|---|
//! | Deepgram live / Flux STT | a final / `EndOfTurn` sent | right after that final | at once, after the handshake |
//! | ElevenLabs, Aura TTS | an utterance finished (`isFinal` / `Flushed`) | at the next text it is asked to speak | at once, after the handshake |
//! | OpenAI, Anthropic LLM | a request answered | — | the next request |
//!
//! [`FaultKind::HttpStatus`] strikes websocket fakes in two ways: the live connection is closed
//! with the provider's error, and new handshakes are refused with the status and the provider's
//! real error body (each refusal is a strike). That is how a mid-call 429 or 5xx looks to a
//! streaming client: the socket ends and the reconnect is refused.

use std::sync::Mutex;

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The connection ends without a goodbye: TCP closed with no websocket close frame, or the
    /// HTTP response aborted before its first token.
    Drop,
    /// The server stops answering but keeps the connection open (reads go on, nothing is sent).
    Stall,
    /// The provider's HTTP error (`429`, `500`, `503`, `529`, …) with its real error body.
    HttpStatus(u16),
    /// Malformed messages instead of real ones: JSON that does not parse, in place of results,
    /// audio or stream events.
    Garbage,
}

/// When and how often a [`FaultKind`] strikes (see the module docs for the units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// What goes wrong.
    pub kind: FaultKind,
    /// Units of work served normally before the fault strikes.
    pub after: u32,
    /// Connections or requests struck; `None`: every one from then on.
    pub times: Option<u32>,
}

impl Fault {
    /// `kind` after `after` units, striking once (a transient fault).
    pub fn once(kind: FaultKind, after: u32) -> Fault {
        Fault {
            kind,
            after,
            times: Some(1),
        }
    }

    /// `kind` after `after` units, striking every connection or request from then on (the
    /// provider is down for good).
    pub fn always(kind: FaultKind, after: u32) -> Fault {
        Fault {
            kind,
            after,
            times: None,
        }
    }
}

#[derive(Debug, Default)]
struct Progress {
    fault: Option<Fault>,
    served: u32,
    strikes: u32,
}

/// A fake's fault and how far it got: units served, strikes made. Thread-safe.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    inner: Mutex<Progress>,
}

impl FaultState {
    fn with<R>(&self, f: impl FnOnce(&mut Progress) -> R) -> R {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Replaces the fault (`None`: behave normally again) and starts counting afresh.
    pub(crate) fn set(&self, fault: Option<Fault>) {
        self.with(|p| {
            *p = Progress {
                fault,
                ..Progress::default()
            }
        });
    }

    /// One unit of work was served normally.
    pub(crate) fn served(&self) {
        self.with(|p| p.served = p.served.saturating_add(1));
    }

    /// Strikes once if the fault is due and `pick` accepts its kind; returns the kind struck.
    pub(crate) fn strike_if(&self, pick: impl FnOnce(FaultKind) -> bool) -> Option<FaultKind> {
        self.with(|p| {
            let f = p.fault?;
            let due = p.served >= f.after && f.times.is_none_or(|t| p.strikes < t);
            if due && pick(f.kind) {
                p.strikes += 1;
                Some(f.kind)
            } else {
                None
            }
        })
    }

    /// Strikes once if the fault is due, whatever its kind.
    pub(crate) fn strike(&self) -> Option<FaultKind> {
        self.strike_if(|_| true)
    }

    /// Strikes made so far.
    pub(crate) fn strikes(&self) -> u32 {
        self.with(|p| p.strikes)
    }
}

/// A text frame that looks like the start of a provider message but is not valid JSON.
pub(crate) fn garbage_json(like: &str) -> String {
    let cut = like.len() / 2;
    let mut end = cut.max(1).min(like.len());
    while end < like.len() && !like.is_char_boundary(end) {
        end += 1;
    }
    format!("{}\u{0}\u{fffd}]]", &like[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_waits_for_its_units_then_strikes_its_times() {
        let s = FaultState::default();
        assert_eq!(s.strike(), None, "no fault: normal");
        s.set(Some(Fault::once(FaultKind::Stall, 2)));
        assert_eq!(s.strike(), None);
        s.served();
        assert_eq!(s.strike_if(|_| true), None, "not due yet");
        s.served();
        assert_eq!(s.strike_if(|k| k == FaultKind::Drop), None, "not picked");
        assert_eq!(s.strike(), Some(FaultKind::Stall));
        assert_eq!(s.strike(), None, "struck once");
        assert_eq!(s.strikes(), 1);
        s.set(Some(Fault::always(FaultKind::HttpStatus(503), 0)));
        for _ in 0..5 {
            assert_eq!(s.strike(), Some(FaultKind::HttpStatus(503)));
        }
    }

    #[test]
    fn garbage_does_not_parse() {
        let g = garbage_json(r#"{"type":"Results","channel":{"alternatives":[]}}"#);
        assert!(
            serde_json::from_str::<serde_json::Value>(&g).is_err(),
            "{g}"
        );
        assert!(g.starts_with(r#"{"type":"#));
    }
}
