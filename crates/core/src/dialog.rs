//! The conversation as the LLM sees it, trimmed to what the caller actually heard.
//!
//! - [`History`]: system, user, assistant and tool messages. Every assistant message carries the
//!   [`Generation`] that produced it and the span of that generation's spoken text it holds.
//! - [`SpokenText`]: per generation, the text given to TTS and the audio it became (with the TTS
//!   provider's character alignment when it gives one), so a playback position maps back to the
//!   words heard.
//! - [`PlayoutLedger`]: the marks sent to Twilio (generation + sequence, position in the audio);
//!   an echoed mark tells how far playback got; marks of a cleared generation are ignored.
//!
//! After a confirmed interruption the assistant's messages of that generation keep only the words
//! that played ([`History::keep_heard`]); a reply nobody heard leaves the history together with
//! its tool calls and results ([`History::remove_generation`]).

use crate::call::time::Millis;
use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;

/// One bot utterance: a reply (possibly over several LLM rounds with tools), the welcome, an idle
/// prompt, a goodbye, a listening cue. Ids increase through the call and are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(pub u64);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The name of a playback mark: which generation and the mark's sequence within it. Sent to
/// Twilio as `g<generation>-<seq>` (ASCII, no allocation until the runtime formats it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MarkName {
    /// The generation whose audio precedes the mark.
    pub generation: Generation,
    /// 1-based sequence of the mark within its generation.
    pub seq: u32,
}

impl fmt::Display for MarkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}-{}", self.generation.0, self.seq)
    }
}

impl MarkName {
    /// Parses `g<generation>-<seq>`; `None` for any other name (marks not sent by the core).
    pub fn parse(name: &str) -> Option<MarkName> {
        let rest = name.strip_prefix('g')?;
        let (g, s) = rest.split_once('-')?;
        Some(MarkName {
            generation: Generation(g.parse().ok()?),
            seq: s.parse().ok()?,
        })
    }
}

/// Who a history message is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The system prompt.
    System,
    /// The caller.
    User,
    /// The bot.
    Assistant,
    /// A tool's result.
    Tool,
}

/// A tool call the LLM asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// Provider's id of the call; the result refers to it.
    pub id: String,
    /// Tool (function) name.
    pub name: String,
    /// Arguments as the provider sent them (JSON text).
    pub arguments: String,
}

/// One history message, in the shape chat-completion APIs take.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// Text; for the assistant exactly the words spoken (or heard, after an interruption).
    pub content: String,
    /// Tool calls of an assistant message.
    pub tool_calls: Vec<ToolCall>,
    /// For a tool message, the call it answers.
    pub tool_call_id: Option<String>,
    /// The bot generation that produced an assistant or tool message.
    pub generation: Option<Generation>,
    span: Range<usize>,
}

impl Message {
    fn new(role: Role, content: String) -> Self {
        Self {
            role,
            content,
            tool_calls: Vec::new(),
            tool_call_id: None,
            generation: None,
            span: 0..0,
        }
    }
}

/// The conversation history of a call.
#[derive(Debug, Clone, Default)]
pub struct History {
    messages: Vec<Message>,
}

impl History {
    /// A history holding the system prompt (none when it is empty).
    pub fn new(system_prompt: &str) -> Self {
        let mut messages = Vec::new();
        if !system_prompt.trim().is_empty() {
            messages.push(Message::new(Role::System, system_prompt.to_owned()));
        }
        Self { messages }
    }

    /// All messages in order.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// A copy for an LLM request.
    pub fn snapshot(&self) -> Vec<Message> {
        self.messages.clone()
    }

    /// Adds a caller turn. Consecutive caller turns (the reply between them was never heard) are
    /// merged into one message, so user messages never follow each other.
    pub fn push_user(&mut self, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        if let Some(last) = self.messages.last_mut()
            && last.role == Role::User
        {
            last.content.push(' ');
            last.content.push_str(text);
            return;
        }
        self.messages
            .push(Message::new(Role::User, text.to_owned()));
    }

    /// Adds spoken text of `generation`: `range` is the new chunk's span in `spoken` (the
    /// generation's whole spoken text). Extends the generation's open assistant message or opens
    /// one.
    pub fn push_assistant_text(
        &mut self,
        generation: Generation,
        spoken: &str,
        range: Range<usize>,
    ) {
        if let Some(last) = self.messages.last_mut()
            && last.role == Role::Assistant
            && last.generation == Some(generation)
            && last.tool_calls.is_empty()
        {
            last.span.end = range.end;
            if let Some(s) = spoken.get(last.span.clone()) {
                last.content = s.to_owned();
            }
            return;
        }
        let mut m = Message::new(
            Role::Assistant,
            spoken.get(range.clone()).unwrap_or("").to_owned(),
        );
        m.generation = Some(generation);
        m.span = range;
        self.messages.push(m);
    }

    /// Adds a tool call of `generation`, on its open assistant message when it is the last one.
    pub fn push_tool_call(&mut self, generation: Generation, call: ToolCall, spoken_len: usize) {
        if let Some(last) = self.messages.last_mut()
            && last.role == Role::Assistant
            && last.generation == Some(generation)
        {
            last.tool_calls.push(call);
            return;
        }
        let mut m = Message::new(Role::Assistant, String::new());
        m.generation = Some(generation);
        m.span = spoken_len..spoken_len;
        m.tool_calls.push(call);
        self.messages.push(m);
    }

    /// Adds a tool result of `generation`.
    pub fn push_tool_result(&mut self, generation: Generation, call_id: &str, content: &str) {
        let mut m = Message::new(Role::Tool, content.to_owned());
        m.tool_call_id = Some(call_id.to_owned());
        m.generation = Some(generation);
        self.messages.push(m);
    }

    /// Removes everything `generation` added (assistant text, tool calls, tool results): a reply
    /// nobody heard.
    pub fn remove_generation(&mut self, generation: Generation) {
        self.messages.retain(|m| m.generation != Some(generation));
    }

    /// Keeps only the first `heard` bytes of `generation`'s spoken text (a word boundary from
    /// [`SpokenText::heard_end`]) in its assistant messages; text-only messages left empty are
    /// removed; tool calls and results that already happened stay. `heard == 0` removes the whole
    /// generation.
    pub fn keep_heard(&mut self, generation: Generation, heard: usize) {
        if heard == 0 {
            self.remove_generation(generation);
            return;
        }
        self.trim_text(generation, heard);
    }

    /// A reply nobody heard whose tools did run: its text goes, its tool calls and results
    /// stay (their side effects happened, and the LLM must know, e.g. not to send an SMS twice).
    pub fn keep_tool_work(&mut self, generation: Generation) {
        self.trim_text(generation, 0);
    }

    fn trim_text(&mut self, generation: Generation, heard: usize) {
        for m in &mut self.messages {
            if m.role != Role::Assistant || m.generation != Some(generation) {
                continue;
            }
            let keep = heard.saturating_sub(m.span.start).min(m.content.len());
            let mut cut = keep;
            while cut > 0 && !m.content.is_char_boundary(cut) {
                cut -= 1;
            }
            m.content.truncate(cut);
            let trimmed = m.content.trim_end().len();
            m.content.truncate(trimmed);
            m.span.end = m.span.start + m.content.len();
        }
        self.messages.retain(|m| {
            !(m.role == Role::Assistant
                && m.generation == Some(generation)
                && m.content.is_empty()
                && m.tool_calls.is_empty())
        });
    }

    /// Adds a complete bot utterance that did not come from the LLM (welcome, idle prompt,
    /// apology, goodbye) as one assistant message.
    pub fn push_scripted(&mut self, generation: Generation, text: &str) {
        let mut m = Message::new(Role::Assistant, text.to_owned());
        m.generation = Some(generation);
        m.span = 0..text.len();
        self.messages.push(m);
    }

    /// Checks the structural invariants: the system prompt only first, no two user messages in a
    /// row, every tool message answers a tool call made earlier in the same generation, no empty
    /// text-only assistant message. Returns the first violation.
    pub fn check(&self) -> Result<(), String> {
        let mut prev: Option<&Message> = None;
        for (i, m) in self.messages.iter().enumerate() {
            if m.role == Role::System && i != 0 {
                return Err(format!("system message at {i}"));
            }
            if m.role == Role::User && prev.is_some_and(|p| p.role == Role::User) {
                return Err(format!("two user messages in a row at {i}"));
            }
            if m.role == Role::Assistant && m.content.is_empty() && m.tool_calls.is_empty() {
                return Err(format!("empty assistant message at {i}"));
            }
            if m.role == Role::Tool {
                let id = m.tool_call_id.as_deref().unwrap_or("");
                let answered = self.messages[..i].iter().any(|p| {
                    p.role == Role::Assistant
                        && p.generation == m.generation
                        && p.tool_calls.iter().any(|c| c.id == id)
                });
                if !answered {
                    return Err(format!("tool result {id:?} at {i} without its call"));
                }
            }
            prev = Some(m);
        }
        Ok(())
    }
}

/// Character timings of a TTS audio chunk (ElevenLabs `alignment`): times are ms relative to the
/// start of the audio chunk they came with.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Alignment {
    /// The characters, in order (one `char` per timing entry).
    pub chars: Vec<char>,
    /// Start of each character, ms from the start of the chunk.
    pub char_start_ms: Vec<u32>,
    /// Duration of each character in ms.
    pub char_duration_ms: Vec<u32>,
}

/// The text one generation gave to TTS and the audio it became.
#[derive(Debug, Clone, Default)]
pub struct SpokenText {
    text: String,
    nonws_total: usize,
    audio_ms: u64,
    /// (count of non-whitespace aligned chars up to and including this one, audio end ms).
    aligned: Vec<(usize, u64)>,
    aligned_nonws: usize,
}

impl SpokenText {
    /// The whole spoken text so far (chunks joined with single spaces).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// ms of audio received for this generation.
    pub fn audio_ms(&self) -> u64 {
        self.audio_ms
    }

    /// Appends a chunk given to TTS; returns its byte range in [`SpokenText::text`].
    pub fn push_text(&mut self, chunk: &str) -> Range<usize> {
        let chunk = chunk.trim();
        if !self.text.is_empty() && !chunk.is_empty() {
            self.text.push(' ');
        }
        let start = self.text.len();
        self.text.push_str(chunk);
        self.nonws_total += chunk.chars().filter(|c| !c.is_whitespace()).count();
        start..self.text.len()
    }

    /// Records `audio_ms` ms of audio received, with its character alignment if the TTS gave one.
    pub fn push_audio(&mut self, audio_ms: u64, alignment: Option<&Alignment>) {
        if let Some(a) = alignment {
            let n = a
                .chars
                .len()
                .min(a.char_start_ms.len())
                .min(a.char_duration_ms.len());
            for i in 0..n {
                if a.chars[i].is_whitespace() {
                    continue;
                }
                self.aligned_nonws += 1;
                let end = self.audio_ms
                    + u64::from(a.char_start_ms[i])
                    + u64::from(a.char_duration_ms[i]);
                self.aligned.push((self.aligned_nonws, end));
            }
        }
        self.audio_ms += audio_ms;
    }

    /// Byte index into [`SpokenText::text`] up to which the caller heard the text after
    /// `played_ms` ms of this generation's audio played: exact from character alignment when the
    /// TTS gave it, otherwise proportional (played / received audio × characters given to TTS),
    /// then cut back to the end of the last whole word.
    pub fn heard_end(&self, played_ms: u64) -> usize {
        if played_ms == 0 || self.nonws_total == 0 {
            return 0;
        }
        let nonws_heard = if !self.aligned.is_empty() {
            let heard = self
                .aligned
                .iter()
                .take_while(|(_, end)| *end <= played_ms)
                .last()
                .map_or(0, |(n, _)| *n);
            if played_ms >= self.audio_ms && self.aligned_nonws >= self.nonws_total {
                self.nonws_total
            } else {
                heard
            }
        } else if self.audio_ms == 0 {
            0
        } else if played_ms >= self.audio_ms {
            self.nonws_total
        } else {
            (self.nonws_total as u128 * u128::from(played_ms) / u128::from(self.audio_ms)) as usize
        };
        word_cut(&self.text, nonws_heard.min(self.nonws_total))
    }
}

/// The byte index after the `nonws`-th non-whitespace char, moved back to the end of the last
/// complete word (a word is complete when its last char was reached).
fn word_cut(text: &str, nonws: usize) -> usize {
    if nonws == 0 {
        return 0;
    }
    let mut count = 0;
    let mut idx = text.len();
    for (i, c) in text.char_indices() {
        if !c.is_whitespace() {
            count += 1;
            if count == nonws {
                idx = i + c.len_utf8();
                break;
            }
        }
    }
    let rest = &text[idx..];
    if rest.chars().next().is_some_and(|c| !c.is_whitespace()) {
        // Mid-word: drop the partial word.
        let head = &text[..idx];
        idx = head.rfind(char::is_whitespace).unwrap_or(0);
    }
    text[..idx].trim_end().len()
}

/// A mark sent to Twilio and not yet echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingMark {
    /// Its name.
    pub name: MarkName,
    /// ms of the generation's audio before the mark.
    pub generation_pos_ms: u64,
    /// ms of all audio sent on the call (since the last `clear`) before the mark.
    pub stream_pos_ms: u64,
    /// Whether this is the last mark of its generation (its echo means playback done).
    pub last: bool,
}

/// Marks sent and not yet echoed; maps an echo back to a playback position.
#[derive(Debug, Clone, Default)]
pub struct PlayoutLedger {
    pending: VecDeque<PendingMark>,
    cleared_upto: Option<Generation>,
}

impl PlayoutLedger {
    /// Records a mark just sent.
    pub fn sent(&mut self, mark: PendingMark) {
        self.pending.push_back(mark);
    }

    /// Resolves an echoed mark name. `None` for names the core did not send, marks of a cleared
    /// generation and marks already resolved. Marks sent before it are dropped too (their audio
    /// has played).
    pub fn echoed(&mut self, name: &str) -> Option<PendingMark> {
        let parsed = MarkName::parse(name)?;
        if self.cleared_upto.is_some_and(|g| parsed.generation <= g) {
            return None;
        }
        let pos = self.pending.iter().position(|m| m.name == parsed)?;
        let found = self.pending.get(pos).copied();
        self.pending.drain(..=pos);
        found
    }

    /// Forgets marks of generations up to `upto` (after `clear`); their echoes will be ignored.
    pub fn clear(&mut self, upto: Generation) {
        self.cleared_upto = Some(self.cleared_upto.map_or(upto, |g| g.max(upto)));
        self.pending.retain(|m| m.name.generation > upto);
    }

    /// Forgets the pending marks of one generation (a cue that was cut short without `clear`).
    pub fn forget(&mut self, generation: Generation) {
        self.pending.retain(|m| m.name.generation != generation);
    }

    /// Number of marks awaiting their echo.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether an echo of `generation`'s marks would be ignored.
    pub fn is_cleared(&self, generation: Generation) -> bool {
        self.cleared_upto.is_some_and(|g| generation <= g)
    }
}

/// Who spoke a transcript line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Speaker {
    /// The caller.
    User,
    /// The bot.
    Assistant,
}

/// One line of the call transcript, emitted as it happens (not only at the end).
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptEntry {
    /// Who spoke.
    pub speaker: Speaker,
    /// What was said (for the bot: what the caller heard).
    pub text: String,
    /// When the speech started (call time).
    pub start: Millis,
    /// When it ended (call time).
    pub end: Millis,
    /// The bot was cut off by the caller (or the caller hung up) before the end.
    pub interrupted: bool,
    /// A caller backchannel ("uh-huh") said while the bot talked: kept here, not a turn.
    pub backchannel: bool,
    /// The bot generation, for bot lines.
    pub generation: Option<Generation>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_names_round_trip() {
        let m = MarkName {
            generation: Generation(7),
            seq: 12,
        };
        assert_eq!(m.to_string(), "g7-12");
        assert_eq!(MarkName::parse("g7-12"), Some(m));
        for bad in ["", "g", "g7", "x7-1", "g-1", "g7-x", "utt-7-end"] {
            assert_eq!(MarkName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn proportional_cut_at_word_boundary() {
        let mut s = SpokenText::default();
        s.push_text("Hello there.");
        s.push_text("How are you today?");
        assert_eq!(s.text(), "Hello there. How are you today?");
        s.push_audio(1000, None);
        assert_eq!(s.heard_end(0), 0);
        assert_eq!(&s.text()[..s.heard_end(1000)], s.text());
        // 26 non-ws chars; 500 ms → 13 chars: "Hello there. H" -> cut to "Hello there."
        assert_eq!(&s.text()[..s.heard_end(500)], "Hello there.");
        assert_eq!(&s.text()[..s.heard_end(100)], "");
        assert_eq!(&s.text()[..s.heard_end(5000)], s.text());
    }

    #[test]
    fn aligned_cut_uses_char_times() {
        let mut s = SpokenText::default();
        s.push_text("ab cd");
        let a = Alignment {
            chars: "ab cd".chars().collect(),
            char_start_ms: vec![0, 100, 200, 300, 400],
            char_duration_ms: vec![100, 100, 100, 100, 100],
        };
        s.push_audio(500, Some(&a));
        assert_eq!(&s.text()[..s.heard_end(199)], "");
        assert_eq!(&s.text()[..s.heard_end(200)], "ab");
        assert_eq!(&s.text()[..s.heard_end(450)], "ab");
        assert_eq!(&s.text()[..s.heard_end(500)], "ab cd");
    }

    #[test]
    fn history_cut_and_removal() {
        let mut h = History::new("sys");
        h.push_user("hi");
        let g = Generation(1);
        let mut s = SpokenText::default();
        let r = s.push_text("Let me check.");
        h.push_assistant_text(g, s.text(), r);
        h.push_tool_call(
            g,
            ToolCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: "{}".into(),
            },
            s.text().len(),
        );
        h.push_tool_result(g, "c1", "ok");
        let r = s.push_text("It is sunny today.");
        h.push_assistant_text(g, s.text(), r);
        assert!(h.check().is_ok());
        let mut cut = h.clone();
        cut.keep_heard(g, "Let me check. It is".len());
        let texts: Vec<&str> = cut.messages().iter().map(|m| m.content.as_str()).collect();
        assert_eq!(texts, ["sys", "hi", "Let me check.", "ok", "It is"]);
        let mut cut = h.clone();
        cut.keep_heard(g, "Let me".len());
        let texts: Vec<&str> = cut.messages().iter().map(|m| m.content.as_str()).collect();
        assert_eq!(texts, ["sys", "hi", "Let me", "ok"]);
        assert!(cut.check().is_ok());
        let mut unheard = h.clone();
        unheard.keep_tool_work(g);
        let texts: Vec<&str> = unheard
            .messages()
            .iter()
            .map(|m| m.content.as_str())
            .collect();
        assert_eq!(texts, ["sys", "hi", "", "ok"]);
        assert!(unheard.check().is_ok());
        let mut gone = h.clone();
        gone.keep_heard(g, 0);
        assert_eq!(gone.messages().len(), 2);
        gone.push_user("again");
        assert_eq!(gone.messages().len(), 2);
        assert_eq!(gone.messages()[1].content, "hi again");
        assert!(gone.check().is_ok());
    }

    #[test]
    fn ledger_ignores_cleared_and_unknown_marks() {
        let mut l = PlayoutLedger::default();
        let mk = |g, seq| PendingMark {
            name: MarkName {
                generation: Generation(g),
                seq,
            },
            generation_pos_ms: u64::from(seq) * 100,
            stream_pos_ms: u64::from(seq) * 100,
            last: false,
        };
        l.sent(mk(1, 1));
        l.sent(mk(1, 2));
        l.sent(mk(2, 1));
        assert_eq!(l.echoed("g1-2").map(|m| m.generation_pos_ms), Some(200));
        assert_eq!(l.pending(), 1);
        assert_eq!(l.echoed("g1-1"), None);
        l.clear(Generation(2));
        assert_eq!(l.echoed("g2-1"), None);
        assert_eq!(l.echoed("nonsense"), None);
        assert!(l.is_cleared(Generation(1)));
    }
}
