//! LLM text deltas → speakable chunks for TTS.
//!
//! A TTS provider speaks best with whole sentences, but waiting for a whole reply wastes the
//! caller's time. The [`Chunker`] cuts the streamed reply at sentence boundaries (`.` `!` `?`
//! `…`). The first chunk — the one the caller is waiting for — is cut at the first sentence end
//! whatever its length ("Of course." goes to the TTS at once instead of waiting for the next
//! sentence: about half a second sooner at 60 tokens/s), and also at a clause boundary
//! (`,` `;` `:` `—`) once it is long enough to sound natural. It never cuts inside a word (cuts
//! fall only on whitespace), so numbers (`3.14`, `1,000`, `$5.99`, `10:30`), URLs and e-mail
//! addresses stay whole; abbreviations (`Mr.`, `Dr.`, `e.g.`, `U.S.`, `a.m.`), initials and
//! ellipses that do not end a sentence do not cause a cut; closing quotes and brackets stay with
//! their sentence. A chunk that would exceed `max_chars` is cut at its last space.
//!
//! The text is spoken, so markdown an LLM may emit is removed on the way: emphasis markers
//! (`*`, `**`, `__`, `~~`, backticks), heading marks (`#`), block quotes (`>`), bullets and
//! numbered-list markers at the start of a line, and horizontal rules. Whitespace is collapsed
//! to single spaces; a line break after a line that ends without punctuation becomes a full stop
//! (so headings and list items are spoken as separate sentences).
//!
//! The result depends only on the text, never on how it was split into deltas: every decision
//! waits until the text it depends on (the rest of a word, the start of the next word) has
//! arrived. A word reaches the chunker once the whitespace after it is followed by the next
//! word's first character, so a boundary is seen at most one word after it was written.
//!
//! ```
//! use switchboard_core::speech::{Chunker, ChunkerConfig};
//! let mut chunker = Chunker::new(ChunkerConfig::default());
//! let mut spoken = Vec::new();
//! for delta in ["Sure, Dr. Smith can ", "see you at 10:30 a.m. tom", "orrow. Shall I book it?"] {
//!     chunker.push(delta);
//!     while let Some(chunk) = chunker.pop() {
//!         spoken.push(chunk);
//!     }
//! }
//! spoken.extend(chunker.finish());
//! assert_eq!(spoken, ["Sure, Dr. Smith can see you at 10:30 a.m. tomorrow.", "Shall I book it?"]);
//! ```

use std::collections::VecDeque;

/// Where the [`Chunker`] may cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerConfig {
    /// The first chunk of a reply is cut at its first sentence end (any length) or at the first
    /// clause boundary once it has at least this many characters (early audio for the caller).
    pub first_chunk_min_chars: usize,
    /// Later chunks are cut at the first sentence boundary once they have at least this many
    /// characters (short sentences are merged: better prosody, fewer TTS requests).
    pub min_chars: usize,
    /// A chunk never grows beyond this many characters: it is cut at its last space first. A
    /// single word longer than this (a long URL) becomes a chunk of its own, uncut.
    pub max_chars: usize,
}

impl Default for ChunkerConfig {
    /// 20 characters for the first chunk, 40 for the others, at most 250.
    fn default() -> Self {
        Self {
            first_chunk_min_chars: 20,
            min_chars: 40,
            max_chars: 250,
        }
    }
}

/// What a word's ending says about a possible cut after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// No boundary after this word.
    None,
    /// A clause boundary (`,` `;` `:` dash).
    Clause,
    /// A sentence boundary.
    Sentence,
    /// A sentence boundary only if the next word starts with an upper-case letter (or the text
    /// ends): ellipses, `etc.`, `a.m.`, `U.S.` …
    IfNextUpper,
    /// A sentence boundary unless the next word starts with a digit (`No. 5`).
    UnlessNextDigit,
}

/// Cuts a streamed LLM reply into speakable chunks. See the [module docs](self) for the rules.
///
/// Usage per reply: [`push`](Chunker::push) each delta and drain [`pop`](Chunker::pop) after it;
/// when the LLM is done, [`finish`](Chunker::finish) returns the rest. [`reset`](Chunker::reset)
/// prepares for the next reply (also after a barge-in cancelled this one).
#[derive(Debug, Clone)]
pub struct Chunker {
    cfg: ChunkerConfig,
    /// The raw (markdown) token being read.
    token: String,
    /// Whether `token` started a line (first token, or a line break before it).
    token_line_start: bool,
    /// Whether we are in the whitespace after `token`.
    in_separator: bool,
    /// Whether the whitespace after `token` (so far) holds a line break.
    separator_newline: bool,
    /// Scratch for normalising `token`.
    word: String,
    /// The chunk being built: normalised words joined by single spaces.
    chunk: String,
    chunk_chars: usize,
    /// A cut after the last word of `chunk` that waits for the next word.
    pending: Option<Ending>,
    /// Whether a chunk of this reply has been cut already (the first one is special).
    cut_any: bool,
    ready: VecDeque<String>,
}

impl Chunker {
    /// A chunker for one reply at a time.
    pub fn new(cfg: ChunkerConfig) -> Self {
        Self {
            cfg,
            token: String::with_capacity(32),
            token_line_start: true,
            in_separator: false,
            separator_newline: false,
            word: String::with_capacity(32),
            chunk: String::with_capacity(cfg.max_chars.min(1024) + 16),
            chunk_chars: 0,
            pending: None,
            cut_any: false,
            ready: VecDeque::new(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> ChunkerConfig {
        self.cfg
    }

    /// Feeds the next LLM text delta (any split, even inside a word or a multi-byte character's
    /// neighbours — deltas are `&str`, so always whole characters).
    pub fn push(&mut self, delta: &str) {
        for c in delta.chars() {
            if c.is_whitespace() {
                if !self.token.is_empty() {
                    self.in_separator = true;
                    if c == '\n' {
                        self.separator_newline = true;
                    }
                } else if c == '\n' {
                    // Line break before any token of the reply, or right after a dropped one.
                    self.token_line_start = true;
                }
            } else {
                if self.in_separator {
                    let newline = self.separator_newline;
                    let kept = self.complete_token(newline);
                    // A dropped token (a bullet, `**`) leaves the line start where it was.
                    self.token_line_start = newline || (self.token_line_start && !kept);
                    self.in_separator = false;
                    self.separator_newline = false;
                }
                self.token.push(c);
            }
        }
    }

    /// The next chunk ready to be spoken, in order.
    pub fn pop(&mut self) -> Option<String> {
        self.ready.pop_front()
    }

    /// Ends the reply: everything not yet popped, as one string (`None` if nothing is left).
    /// Normally that is the last chunk; it can hold two when the last word pushed the chunk
    /// over `max_chars`, or more if the caller did not drain [`pop`](Chunker::pop). Use
    /// [`close`](Chunker::close) instead to get the remaining chunks one by one. The chunker is
    /// then ready for the next reply.
    pub fn finish(&mut self) -> Option<String> {
        self.close();
        let mut rest: Option<String> = None;
        while let Some(chunk) = self.ready.pop_front() {
            match rest.as_mut() {
                Some(r) => {
                    r.push(' ');
                    r.push_str(&chunk);
                }
                None => rest = Some(chunk),
            }
        }
        rest
    }

    /// Ends the reply and queues its remaining chunks for [`pop`](Chunker::pop). Text pushed
    /// afterwards starts a new reply (its first chunk is a "first chunk" again).
    pub fn close(&mut self) {
        if !self.token.is_empty() {
            let newline = self.separator_newline;
            self.complete_token(newline);
        }
        if let Some(ending) = self.pending.take() {
            // End of text: any pending boundary is real.
            let boundary = !matches!(ending, Ending::None);
            self.maybe_cut(boundary);
        }
        self.cut();
        let ready = std::mem::take(&mut self.ready);
        self.reset();
        self.ready = ready;
    }

    /// Forgets the current reply (text, chunks not popped) and starts over; the next chunk is
    /// a "first chunk" again.
    pub fn reset(&mut self) {
        self.token.clear();
        self.token_line_start = true;
        self.in_separator = false;
        self.separator_newline = false;
        self.word.clear();
        self.chunk.clear();
        self.chunk_chars = 0;
        self.pending = None;
        self.cut_any = false;
        self.ready.clear();
    }

    /// Whether text is buffered that has not come out of [`pop`](Chunker::pop) yet.
    pub fn has_pending_text(&self) -> bool {
        !self.token.is_empty() || !self.chunk.is_empty() || !self.ready.is_empty()
    }

    /// The raw token is complete: normalise it and hand it to the cutting logic. Returns
    /// whether it produced a word (markup-only tokens produce none).
    fn complete_token(&mut self, newline_after: bool) -> bool {
        let mut word = std::mem::take(&mut self.word);
        normalize_token(&self.token, self.token_line_start, newline_after, &mut word);
        self.token.clear();
        let kept = !word.is_empty();
        if kept {
            self.on_word(&word);
        }
        self.word = word;
        kept
    }

    /// Characters a chunk needs before a sentence end may cut it: any for the first chunk (a
    /// whole sentence sounds natural however short, and the caller is waiting for it).
    fn threshold(&self) -> usize {
        if self.cut_any { self.cfg.min_chars } else { 1 }
    }

    fn on_word(&mut self, word: &str) {
        if let Some(ending) = self.pending.take() {
            let first = first_significant_char(word);
            let boundary = match ending {
                Ending::IfNextUpper => first.is_some_and(char::is_uppercase),
                Ending::UnlessNextDigit => !first.is_some_and(|c| c.is_ascii_digit()),
                Ending::Sentence => true,
                Ending::Clause | Ending::None => false,
            };
            self.maybe_cut(boundary);
        }
        let word_chars = word.chars().count();
        if self.chunk_chars > 0 && self.chunk_chars + 1 + word_chars > self.cfg.max_chars {
            self.cut();
        }
        if self.chunk_chars > 0 {
            self.chunk.push(' ');
            self.chunk_chars += 1;
        }
        self.chunk.push_str(word);
        self.chunk_chars += word_chars;
        match classify_ending(word) {
            Ending::Sentence => self.maybe_cut(true),
            Ending::Clause => {
                if !self.cut_any && self.chunk_chars >= self.cfg.first_chunk_min_chars {
                    self.cut();
                }
            }
            Ending::None => {}
            deferred => self.pending = Some(deferred),
        }
    }

    /// Cuts after the current last word if it is a sentence boundary and the chunk is long
    /// enough.
    fn maybe_cut(&mut self, sentence_boundary: bool) {
        if sentence_boundary && self.chunk_chars >= self.threshold() {
            self.cut();
        }
    }

    fn cut(&mut self) {
        if self.chunk.is_empty() {
            return;
        }
        let capacity = self.chunk.capacity();
        let chunk = std::mem::replace(&mut self.chunk, String::with_capacity(capacity));
        self.ready.push_back(chunk);
        self.chunk_chars = 0;
        self.pending = None;
        self.cut_any = true;
    }
}

/// Characters that close a sentence after its terminator: they stay with the sentence.
fn is_closer(c: char) -> bool {
    matches!(c, '"' | '\'' | '”' | '’' | ')' | ']' | '}' | '»' | '›')
}

/// Characters that open a word before its first letter.
fn is_opener(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | '“' | '‘' | '(' | '[' | '{' | '«' | '‹' | '¿' | '¡'
    )
}

/// First character of a word after opening quotes and brackets.
fn first_significant_char(word: &str) -> Option<char> {
    word.chars().find(|&c| !is_opener(c))
}

/// Titles and abbreviations that never end a sentence (lower case, with their dot).
const NEVER_FINAL: &[&str] = &[
    "mr.", "mrs.", "ms.", "dr.", "prof.", "sr.", "jr.", "st.", "mt.", "ft.", "gen.", "col.", "lt.",
    "sgt.", "capt.", "rev.", "hon.", "fr.", "vs.", "v.", "e.g.", "i.e.", "cf.", "viz.", "approx.",
    "ca.", "fig.", "vol.", "pp.", "ave.", "blvd.", "rd.",
];

/// Abbreviations that may end a sentence: a boundary only before an upper-case word.
const MAYBE_FINAL: &[&str] = &[
    "etc.", "inc.", "ltd.", "co.", "corp.", "llc.", "dept.", "univ.", "jan.", "feb.", "mar.",
    "apr.", "jun.", "jul.", "aug.", "sep.", "sept.", "oct.", "nov.", "dec.", "mon.", "tue.",
    "wed.", "thu.", "fri.", "sat.", "sun.", "min.", "max.", "hr.", "hrs.", "mins.", "sec.",
    "secs.", "est.", "pst.", "al.",
];

fn classify_ending(word: &str) -> Ending {
    let core = word.trim_end_matches(is_closer);
    let Some(last) = core.chars().next_back() else {
        return Ending::None;
    };
    match last {
        '!' | '?' | '‼' | '⁇' => Ending::Sentence,
        '…' => Ending::IfNextUpper,
        '.' => classify_period(core),
        ',' | ';' | ':' | '—' | '–' | '、' => Ending::Clause,
        '-' if core.chars().all(|c| c == '-') => Ending::Clause,
        _ => Ending::None,
    }
}

fn classify_period(core: &str) -> Ending {
    if core.ends_with("..") {
        return Ending::IfNextUpper;
    }
    let bare = core.trim_start_matches(is_opener);
    let lower = bare.to_lowercase();
    if NEVER_FINAL.contains(&lower.as_str()) {
        return Ending::None;
    }
    if lower == "no." || lower == "nos." {
        return Ending::UnlessNextDigit;
    }
    if MAYBE_FINAL.contains(&lower.as_str()) {
        return Ending::IfNextUpper;
    }
    let letters: Vec<char> = bare.chars().collect();
    // An initial: "J." in "J. K. Rowling".
    if letters.len() == 2 && letters[0].is_uppercase() {
        return Ending::None;
    }
    // Letter-dot acronyms: "U.S.", "a.m.", "U.S.A.", "p.m.".
    if letters.len() >= 4
        && letters
            .chunks(2)
            .all(|pair| pair.len() == 2 && pair[0].is_alphabetic() && pair[1] == '.')
    {
        return Ending::IfNextUpper;
    }
    Ending::Sentence
}

/// Bullets that start a markdown list item.
fn is_bullet(token: &str) -> bool {
    if matches!(token, "-" | "*" | "+" | "•" | "◦" | "‣" | "▪" | "–" | "·") {
        return true;
    }
    // "1." "12)" numbered list markers.
    let digits = token.trim_end_matches(['.', ')']);
    token.len() == digits.len() + 1
        && (1..=3).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
}

/// Normalises one whitespace-delimited token of markdown into a spoken word (empty = drop).
fn normalize_token(token: &str, line_start: bool, newline_after: bool, out: &mut String) {
    out.clear();
    if line_start
        && (is_bullet(token) || token.chars().all(|c| c == '#') || token.chars().all(|c| c == '>'))
    {
        return;
    }
    // Horizontal rules: `---`, `***`, `___`, `===`.
    if let Some(first) = token.chars().next()
        && matches!(first, '-' | '=' | '_' | '*')
        && token.len() >= 3
        && token.chars().all(|c| c == first)
    {
        return;
    }
    let mut chars = token.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' | '`' => {}
            '_' | '~' if chars.peek() == Some(&c) => {
                chars.next();
            }
            _ => out.push(c),
        }
    }
    strip_edge_underscores(out);
    if newline_after
        && let Some(last) = out.trim_end_matches(is_closer).chars().next_back()
        && !matches!(
            last,
            '.' | '!' | '?' | '…' | ',' | ';' | ':' | '—' | '–' | '-'
        )
    {
        out.push('.');
    }
}

/// `_emphasis_` markers: underscores at the edges of a word (inside its punctuation) go;
/// underscores inside (`snake_case`, `a_b@c.com`) stay.
fn strip_edge_underscores(word: &mut String) {
    if !word.contains('_') {
        return;
    }
    let is_punct = |c: char| !c.is_alphanumeric() && c != '_';
    let lead_punct = word.len() - word.trim_start_matches(is_punct).len();
    let trail_punct = word.len() - word.trim_end_matches(is_punct).len();
    if lead_punct + trail_punct >= word.len() {
        return;
    }
    let (head, rest) = word.split_at(lead_punct);
    let (middle, tail) = rest.split_at(rest.len() - trail_punct);
    let trimmed = middle.trim_matches('_');
    if trimmed.len() == middle.len() || trimmed.is_empty() {
        return;
    }
    let rebuilt = format!("{head}{trimmed}{tail}");
    *word = rebuilt;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(first: usize, min: usize, max: usize) -> ChunkerConfig {
        ChunkerConfig {
            first_chunk_min_chars: first,
            min_chars: min,
            max_chars: max,
        }
    }

    fn chunk_all(c: ChunkerConfig, deltas: &[&str]) -> Vec<String> {
        let mut chunker = Chunker::new(c);
        let mut out = Vec::new();
        for d in deltas {
            chunker.push(d);
            while let Some(chunk) = chunker.pop() {
                out.push(chunk);
            }
        }
        chunker.close();
        while let Some(chunk) = chunker.pop() {
            out.push(chunk);
        }
        out
    }

    fn whole(c: ChunkerConfig, text: &str) -> Vec<String> {
        chunk_all(c, &[text])
    }

    #[test]
    fn cuts_at_sentences() {
        let got = whole(cfg(1, 1, 200), "Hello there. How are you? I am fine! Bye.");
        assert_eq!(got, ["Hello there.", "How are you?", "I am fine!", "Bye."]);
    }

    #[test]
    fn a_short_first_sentence_goes_out_alone_and_later_ones_merge() {
        let got = whole(
            ChunkerConfig::default(),
            "Of course. On Tuesday I have ten in the morning. Yes. Or three. Which suits you?",
        );
        assert_eq!(
            got,
            [
                "Of course.",
                "On Tuesday I have ten in the morning. Yes.",
                "Or three. Which suits you?"
            ]
        );
        // The cut still waits for the next word: an abbreviation is not a sentence end, and a
        // short clause is not a cut.
        let got = whole(
            ChunkerConfig::default(),
            "Dr. Lee can see you. Sure, at ten.",
        );
        assert_eq!(got, ["Dr. Lee can see you.", "Sure, at ten."]);
        let got = whole(
            ChunkerConfig::default(),
            "Sure, I can book that for you today.",
        );
        assert_eq!(got, ["Sure, I can book that for you today."]);
        // Streamed token by token, the first sentence is ready as soon as the next word starts.
        let mut chunker = Chunker::new(ChunkerConfig::default());
        for d in ["Of", " cour", "se.", " "] {
            chunker.push(d);
            assert_eq!(chunker.pop(), None, "cut before the next word began");
        }
        chunker.push("On");
        assert_eq!(chunker.pop().as_deref(), Some("Of course."));
    }

    #[test]
    fn first_chunk_cuts_at_a_clause_once_long_enough() {
        let got = whole(
            cfg(15, 35, 200),
            "Sure, I can help you with that, just give me a moment, please. Your table is booked.",
        );
        assert_eq!(
            got,
            [
                "Sure, I can help you with that,",
                "just give me a moment, please. Your table is booked."
            ]
        );
    }

    #[test]
    fn later_chunks_merge_short_sentences_up_to_min_chars() {
        let got = whole(
            cfg(5, 25, 200),
            "Okay. Yes. No way. Right then. Fine. Sure thing. Done.",
        );
        assert_eq!(
            got,
            [
                "Okay.",
                "Yes. No way. Right then. Fine.",
                "Sure thing. Done."
            ]
        );
    }

    #[test]
    fn numbers_abbreviations_and_urls_stay_whole() {
        let text = "Pi is 3.14 and it costs $5.99, about 1,000 units at 10:30 a.m. on Friday. \
                    Mr. Smith and Dr. Jones, e.g. the U.S. team, visit example.com/a.b or \
                    mail john_doe@example.co.uk today. J. K. Rowling wrote it.";
        let got = whole(cfg(1, 1, 400), text);
        assert_eq!(
            got,
            [
                "Pi is 3.14 and it costs $5.99,",
                "about 1,000 units at 10:30 a.m. on Friday.",
                "Mr. Smith and Dr. Jones, e.g. the U.S. team, visit example.com/a.b or mail \
                 john_doe@example.co.uk today.",
                "J. K. Rowling wrote it."
            ]
        );
    }

    #[test]
    fn acronym_before_capital_ends_the_sentence() {
        let got = whole(
            cfg(1, 1, 200),
            "We open at 9 a.m. Please come early. Call No. 5 now.",
        );
        assert_eq!(
            got,
            ["We open at 9 a.m.", "Please come early.", "Call No. 5 now."]
        );
        let got = whole(cfg(1, 1, 200), "The answer is no. Sorry about that.");
        assert_eq!(got, ["The answer is no.", "Sorry about that."]);
    }

    #[test]
    fn ellipses_cut_only_before_a_new_sentence() {
        let got = whole(
            cfg(1, 1, 200),
            "I want to... book a table. Well… Let me check... ok.",
        );
        assert_eq!(
            got,
            ["I want to... book a table.", "Well…", "Let me check... ok."]
        );
    }

    #[test]
    fn closing_quotes_and_brackets_stay_with_their_sentence() {
        let got = whole(
            cfg(1, 1, 200),
            "He said \"hello.\" (It was late.) Then he left!\"",
        );
        assert_eq!(
            got,
            ["He said \"hello.\"", "(It was late.)", "Then he left!\""]
        );
    }

    #[test]
    fn max_chars_forces_a_cut_at_the_last_space() {
        let got = whole(
            cfg(50, 50, 20),
            "one two three four five six seven eight nine ten",
        );
        assert_eq!(
            got,
            ["one two three four", "five six seven eight", "nine ten"]
        );
        for chunk in &got {
            assert!(chunk.chars().count() <= 20);
        }
        // A word longer than max_chars is never split.
        let url = "https://example.com/a/very/long/path/that/goes/on";
        let got = whole(cfg(5, 5, 20), &format!("see {url} now"));
        assert_eq!(got, ["see", url, "now"]);
    }

    #[test]
    fn strips_markdown() {
        let text = "# Your options\n\n- **Table** for two\n- *Outside* seating\n1. Call `us`\n\
                    ---\n> Note: __bring__ ID\nThat's ~~all~~ all.";
        let got = whole(cfg(1, 1, 300), text);
        assert_eq!(
            got,
            [
                "Your options.",
                "Table for two.",
                "Outside seating.",
                "Call us.",
                "Note: bring ID.",
                "That's all all."
            ]
        );
    }

    #[test]
    fn keeps_hyphens_hashes_and_underscores_inside_words() {
        let got = whole(
            cfg(1, 1, 300),
            "-5 degrees is #1 in C# for snake_case and _italic_, ok - right.",
        );
        assert_eq!(
            got.join(" "),
            "-5 degrees is #1 in C# for snake_case and italic, ok - right."
        );
    }

    #[test]
    fn finish_returns_the_rest_and_resets() {
        let mut c = Chunker::new(cfg(100, 100, 300));
        c.push("Short reply without an end");
        assert_eq!(c.pop(), None);
        assert!(c.has_pending_text());
        assert_eq!(c.finish().as_deref(), Some("Short reply without an end"));
        assert_eq!(c.finish(), None);
        assert!(!c.has_pending_text());
        // finish() is lossless even when the last word forces a max_chars cut.
        let mut c2 = Chunker::new(cfg(5, 5, 12));
        c2.push("alpha beta gamma");
        assert_eq!(c2.pop(), None);
        assert_eq!(c2.finish().as_deref(), Some("alpha beta gamma"));
        c2.push("alpha beta gamma");
        c2.close();
        assert_eq!(c2.pop().as_deref(), Some("alpha beta"));
        assert_eq!(c2.pop().as_deref(), Some("gamma"));
        assert_eq!(c2.pop(), None);
        // After finish the next reply's first chunk is special again.
        c.push("Hi, there is a new one, yes");
        assert_eq!(c.finish().as_deref(), Some("Hi, there is a new one, yes"));
    }

    #[test]
    fn reset_drops_everything_and_restores_first_chunk_rules() {
        let mut c = Chunker::new(cfg(10, 1000, 300));
        c.push("First sentence here. Second, partial clause, more words");
        assert_eq!(c.pop().as_deref(), Some("First sentence here."));
        c.reset();
        assert!(!c.has_pending_text());
        c.push("Brand new reply, with a clause here ");
        assert_eq!(c.pop().as_deref(), Some("Brand new reply,"));
    }

    #[test]
    fn whitespace_only_input_yields_nothing() {
        assert!(whole(ChunkerConfig::default(), "  \n\n \t ").is_empty());
        assert!(whole(ChunkerConfig::default(), "").is_empty());
        assert!(whole(ChunkerConfig::default(), "** ## - ").is_empty());
    }

    #[test]
    fn a_word_is_released_once_the_next_one_starts() {
        let mut c = Chunker::new(cfg(1, 1, 100));
        c.push("Hello there.");
        assert_eq!(c.pop(), None, "the next word may be needed (newline rule)");
        c.push(" ");
        assert_eq!(c.pop(), None);
        c.push("H");
        assert_eq!(c.pop().as_deref(), Some("Hello there."));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        const VOCAB: &[&str] = &[
            "hello",
            "there",
            "Mr.",
            "Dr.",
            "e.g.",
            "U.S.",
            "a.m.",
            "3.14",
            "1,000",
            "$5.99",
            "10:30",
            "example.com",
            "a@b.co",
            "wait...",
            "well…",
            "ok,",
            "yes;",
            "no:",
            "so—",
            "-",
            "done.",
            "Really?",
            "Great!",
            "\"quoted.\"",
            "(aside.)",
            "The",
            "I",
            "table",
            "for",
            "two",
            "Smith",
            "Paris",
            "etc.",
            "No.",
            "5",
            "J.",
            "bring",
            "snake_case",
        ];

        fn word() -> impl Strategy<Value = String> {
            (0..VOCAB.len(), 0..6u8).prop_map(|(i, markup)| {
                let w = VOCAB[i];
                match markup {
                    0 => format!("**{w}**"),
                    1 => format!("`{w}`"),
                    _ => w.to_string(),
                }
            })
        }

        fn text() -> impl Strategy<Value = String> {
            prop::collection::vec(
                (word(), prop::sample::select(vec![" ", "  ", " \t "])),
                0..60,
            )
            .prop_map(|parts| parts.into_iter().map(|(w, s)| format!("{w}{s}")).collect())
        }

        /// Splits `text` at arbitrary char boundaries.
        fn split(text: &str, cuts: &[usize]) -> Vec<String> {
            let chars: Vec<char> = text.chars().collect();
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (chars.len() + 1)).collect();
            points.sort_unstable();
            points.dedup();
            let mut out = Vec::new();
            let mut start = 0;
            for p in points.into_iter().chain(std::iter::once(chars.len())) {
                out.push(chars[start..p].iter().collect());
                start = p;
            }
            out
        }

        /// Whitespace collapsed, emphasis markers removed, leading bullets dropped.
        fn oracle(text: &str) -> String {
            text.split_whitespace()
                .skip_while(|w| *w == "-")
                .map(|w| w.replace(['*', '`'], ""))
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        }

        proptest! {
            #[test]
            fn chunks_reassemble_to_the_normalised_text(
                t in text(),
                cuts in prop::collection::vec(0usize..10_000, 0..30),
                first in 1usize..40, min in 1usize..80, max in 10usize..120,
            ) {
                let c = cfg(first, min, max);
                let deltas = split(&t, &cuts);
                let refs: Vec<&str> = deltas.iter().map(String::as_str).collect();
                let streamed = chunk_all(c, &refs);
                let at_once = whole(c, &t);
                prop_assert_eq!(&streamed, &at_once, "depends on delta split");
                prop_assert_eq!(streamed.join(" "), oracle(&t));
                for chunk in &streamed {
                    prop_assert!(!chunk.is_empty());
                    prop_assert_eq!(chunk.trim(), chunk.as_str());
                    prop_assert!(
                        chunk.chars().count() <= max || !chunk.contains(' '),
                        "chunk over max_chars: {:?}", chunk
                    );
                }
            }

            #[test]
            fn arbitrary_unicode_never_panics_and_keeps_every_word(
                t in "\\PC{0,200}",
                cuts in prop::collection::vec(0usize..10_000, 0..10),
            ) {
                let c = ChunkerConfig::default();
                let deltas = split(&t, &cuts);
                let refs: Vec<&str> = deltas.iter().map(String::as_str).collect();
                let streamed = chunk_all(c, &refs);
                prop_assert_eq!(&streamed, &whole(c, &t));
                let joined = streamed.join(" ");
                prop_assert!(joined.split_whitespace().count() <= t.split_whitespace().count());
            }
        }
    }
}
