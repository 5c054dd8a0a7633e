//! Incremental server-sent-events (SSE) parser: bytes in, events out.
//!
//! LLM providers stream replies as `text/event-stream`. TCP reads split events at arbitrary
//! byte positions, servers use `\n`, `\r\n` or `\r` line endings, send `:` comment lines as
//! keep-alives, and Anthropic names each event with an `event:` line. This parser handles all of
//! that with buffers that are reused across events, so a long stream allocates only while its
//! buffers grow to the size of the largest event.
//!
//! The buffers are bounded ([`MAX_EVENT_BYTES`]): base URLs are tenant settings, so the server
//! may be hostile, and a line that never ends must not grow the engine's memory without end.

/// Largest event data, and longest line, the parser holds before giving up, in bytes. LLM
/// stream events are deltas of a few hundred bytes; 1 MiB leaves ample room for a large
/// tool-call argument delta.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Why a stream cannot be parsed further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event's data, or a single line, grew past the limit before it ended.
    #[error("server-sent event or line over the {limit_bytes}-byte limit")]
    EventTooLarge {
        /// The limit in bytes.
        limit_bytes: usize,
    },
}

/// One dispatched event, borrowed from the parser's buffers until the next call to [`SseParser::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field, or `""` when the event had none (the SSE default type `message`).
    pub event: &'a str,
    /// All `data:` lines of the event joined with `\n` (the trailing newline removed).
    pub data: &'a str,
}

/// Incremental SSE parser. Feed it every chunk of the body in order, then call
/// [`SseParser::finish`] at end of stream. After an error the stream must be abandoned (the
/// parser has dropped what it held).
#[derive(Debug)]
pub struct SseParser {
    /// Bytes of a line that is not yet terminated (only used when a line spans reads).
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` at the start of the next chunk belongs to it.
    skip_lf: bool,
    /// Current event's `event:` value.
    event: String,
    /// Current event's data, each `data:` line followed by `\n`.
    data: String,
    /// Whether any `data:` line was seen for the current event (an empty `data:` still counts).
    has_data: bool,
    /// Bound of `line` and of `data`, in bytes.
    max_event_bytes: usize,
}

impl Default for SseParser {
    /// A parser with empty buffers and the [`MAX_EVENT_BYTES`] bound.
    fn default() -> Self {
        Self::with_max_event_bytes(MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// A parser with empty buffers and the [`MAX_EVENT_BYTES`] bound.
    pub fn new() -> Self {
        Self::default()
    }

    /// A parser that refuses an event whose data, or a line, exceeds `max_event_bytes` bytes.
    pub fn with_max_event_bytes(max_event_bytes: usize) -> Self {
        Self {
            line: Vec::new(),
            skip_lf: false,
            event: String::new(),
            data: String::new(),
            has_data: false,
            max_event_bytes,
        }
    }

    /// Bytes the parser holds for the event being read (its data, its name and an unfinished
    /// line). Between calls this stays within a small multiple of the bound (invalid UTF-8
    /// becomes a 3-byte replacement character).
    pub fn buffered_bytes(&self) -> usize {
        self.line.len() + self.data.len() + self.event.len()
    }

    /// Parses `input` and calls `on_event` for every event completed by it (by a blank line).
    /// Fails when an event's data or a line exceeds the bound; the events completed before it
    /// have been delivered.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        on_event: &mut impl FnMut(SseEvent<'_>),
    ) -> Result<(), SseError> {
        if self.skip_lf && !input.is_empty() {
            self.skip_lf = false;
            if let Some((&b'\n', rest)) = input.split_first() {
                input = rest;
            }
        }
        while !input.is_empty() {
            let Some(pos) = input.iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.extend_line(input)?;
                return Ok(());
            };
            let terminator = input[pos];
            let rest = &input[pos + 1..];
            if self.line.is_empty() {
                self.process_line(&input[..pos], on_event)?;
            } else {
                self.extend_line(&input[..pos])?;
                let line = std::mem::take(&mut self.line);
                let processed = self.process_line(&line, on_event);
                self.line = line;
                self.line.clear();
                processed?;
            }
            input = rest;
            if terminator == b'\r' {
                match input.split_first() {
                    Some((&b'\n', after)) => input = after,
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
        }
        Ok(())
    }

    /// Ends the stream: a final line without terminator and an event without its blank line are
    /// still delivered (some servers close right after `data: [DONE]\n`).
    pub fn finish(&mut self, on_event: &mut impl FnMut(SseEvent<'_>)) -> Result<(), SseError> {
        self.skip_lf = false;
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, on_event)?;
        }
        self.dispatch(on_event);
        Ok(())
    }

    /// Appends to the unfinished line, within the bound.
    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > self.max_event_bytes {
            return Err(self.overflow());
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// Drops everything held (the stream is abandoned) and names the bound.
    fn overflow(&mut self) -> SseError {
        self.line = Vec::new();
        self.data = String::new();
        self.event = String::new();
        self.has_data = false;
        self.skip_lf = false;
        SseError::EventTooLarge {
            limit_bytes: self.max_event_bytes,
        }
    }

    fn process_line(
        &mut self,
        line: &[u8],
        on_event: &mut impl FnMut(SseEvent<'_>),
    ) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch(on_event);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(()); // comment / keep-alive
        }
        if line.len() > self.max_event_bytes {
            return Err(self.overflow());
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                push_utf8(&mut self.data, value);
                self.data.push('\n');
                self.has_data = true;
                if self.data.len() > self.max_event_bytes {
                    return Err(self.overflow());
                }
            }
            b"event" => {
                self.event.clear();
                push_utf8(&mut self.event, value);
            }
            _ => {} // `id`, `retry` and unknown fields do not matter to LLM streams
        }
        Ok(())
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if self.has_data {
            let data = self.data.strip_suffix('\n').unwrap_or(&self.data);
            on_event(SseEvent {
                event: &self.event,
                data,
            });
        }
        self.data.clear();
        self.event.clear();
        self.has_data = false;
    }
}

/// Appends bytes as UTF-8, replacing invalid sequences (a complete line never splits a
/// character, since `\n` and `\r` cannot occur inside a multi-byte sequence).
fn push_utf8(dst: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => dst.push_str(s),
        Err(_) => dst.push_str(&String::from_utf8_lossy(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let mut cb = |e: SseEvent<'_>| out.push((e.event.to_owned(), e.data.to_owned()));
        for c in chunks {
            p.feed(c, &mut cb).expect("within the bound");
        }
        p.finish(&mut cb).expect("within the bound");
        out
    }

    const STREAM: &str = ": keep-alive comment\r\n\
        data: {\"a\":1}\r\n\r\n\
        event: message_start\n\
        data: {\"type\":\"message_start\",\"t\":\"h\u{e9}llo \u{1f600}\"}\n\n\
        data: line one\n\
        data:line two\n\
        data\n\n\
        event: ping\rdata: {\"type\":\"ping\"}\r\r\
        id: 7\nretry: 100\ndata: [DONE]\n\n";

    fn expected() -> Vec<(String, String)> {
        vec![
            (String::new(), "{\"a\":1}".to_owned()),
            (
                "message_start".to_owned(),
                "{\"type\":\"message_start\",\"t\":\"h\u{e9}llo \u{1f600}\"}".to_owned(),
            ),
            (String::new(), "line one\nline two\n".to_owned()),
            ("ping".to_owned(), "{\"type\":\"ping\"}".to_owned()),
            (String::new(), "[DONE]".to_owned()),
        ]
    }

    #[test]
    fn whole_stream_parses() {
        assert_eq!(collect(&[STREAM.as_bytes()]), expected());
    }

    #[test]
    fn every_single_split_point_gives_the_same_events() {
        let bytes = STREAM.as_bytes();
        for i in 0..=bytes.len() {
            let (a, b) = bytes.split_at(i);
            assert_eq!(collect(&[a, b]), expected(), "split at byte {i}");
        }
    }

    #[test]
    fn every_pair_of_split_points_gives_the_same_events() {
        let bytes = STREAM.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let chunks = [&bytes[..i], &bytes[i..j], &bytes[j..]];
                assert_eq!(collect(&chunks), expected(), "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn byte_by_byte_gives_the_same_events() {
        let chunks: Vec<&[u8]> = STREAM.as_bytes().chunks(1).collect();
        assert_eq!(collect(&chunks), expected());
    }

    #[test]
    fn final_event_without_blank_line_is_delivered_at_finish() {
        assert_eq!(
            collect(&[b"data: [DONE]"]),
            vec![(String::new(), "[DONE]".to_owned())]
        );
    }

    #[test]
    fn comment_only_and_blank_lines_produce_nothing() {
        assert!(collect(&[b": ping\n\n\n\r\n: x\n\n"]).is_empty());
    }

    #[test]
    fn an_endless_line_or_event_is_refused_at_the_bound() {
        // A line that never ends, fed in reads: refused once it passes the bound.
        let mut p = SseParser::with_max_event_bytes(64);
        let mut events = 0;
        let mut cb = |_: SseEvent<'_>| events += 1;
        assert_eq!(p.feed(b"data: {\"a\":1}\n\ndata: ", &mut cb), Ok(()));
        let mut result = Ok(());
        for _ in 0..10 {
            result = p.feed(&[b'x'; 10], &mut cb);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(SseError::EventTooLarge { limit_bytes: 64 }));
        assert_eq!(p.buffered_bytes(), 0, "an abandoned stream holds nothing");
        // Many short data lines without the blank line that ends the event: refused too.
        let mut p = SseParser::with_max_event_bytes(64);
        let many = b"data: 0123456789\n".repeat(7);
        assert!(matches!(
            p.feed(&many, &mut cb),
            Err(SseError::EventTooLarge { .. })
        ));
        // The event before the overflow was delivered.
        assert_eq!(events, 1);
        // The default bound lets a 100 KB event through.
        let big = format!("data: {}\n\n", "y".repeat(100_000));
        assert_eq!(collect(&[big.as_bytes()])[0].1.len(), 100_000);
    }

    #[test]
    fn event_name_without_data_is_discarded_and_reset() {
        assert_eq!(
            collect(&[b"event: ping\n\ndata: x\n\n"]),
            vec![(String::new(), "x".to_owned())]
        );
    }
}
