//! Incremental server-sent-events (SSE) parser: bytes in, events out.
//!
//! LLM providers stream replies as `text/event-stream`. TCP reads split events at arbitrary
//! byte positions, servers use `\n`, `\r\n` or `\r` line endings, send `:` comment lines as
//! keep-alives, and Anthropic names each event with an `event:` line. This parser handles all of
//! that with buffers that are reused across events, so a long stream allocates only while its
//! buffers grow to the size of the largest event.

/// One dispatched event, borrowed from the parser's buffers until the next call to [`SseParser::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field, or `""` when the event had none (the SSE default type `message`).
    pub event: &'a str,
    /// All `data:` lines of the event joined with `\n` (the trailing newline removed).
    pub data: &'a str,
}

/// Incremental SSE parser. Feed it every chunk of the body in order, then call
/// [`SseParser::finish`] at end of stream.
#[derive(Debug, Default)]
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
}

impl SseParser {
    /// A parser with empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `input` and calls `on_event` for every event completed by it (by a blank line).
    pub fn feed(&mut self, mut input: &[u8], on_event: &mut impl FnMut(SseEvent<'_>)) {
        if self.skip_lf && !input.is_empty() {
            self.skip_lf = false;
            if let Some((&b'\n', rest)) = input.split_first() {
                input = rest;
            }
        }
        while !input.is_empty() {
            let Some(pos) = input.iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.line.extend_from_slice(input);
                return;
            };
            let terminator = input[pos];
            let rest = &input[pos + 1..];
            if self.line.is_empty() {
                self.process_line(&input[..pos], on_event);
            } else {
                self.line.extend_from_slice(&input[..pos]);
                let line = std::mem::take(&mut self.line);
                self.process_line(&line, on_event);
                self.line = line;
                self.line.clear();
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
    }

    /// Ends the stream: a final line without terminator and an event without its blank line are
    /// still delivered (some servers close right after `data: [DONE]\n`).
    pub fn finish(&mut self, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, on_event);
        }
        self.dispatch(on_event);
        self.skip_lf = false;
    }

    fn process_line(&mut self, line: &[u8], on_event: &mut impl FnMut(SseEvent<'_>)) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            return; // comment / keep-alive
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
            }
            b"event" => {
                self.event.clear();
                push_utf8(&mut self.event, value);
            }
            _ => {} // `id`, `retry` and unknown fields do not matter to LLM streams
        }
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
            p.feed(c, &mut cb);
        }
        p.finish(&mut cb);
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
    fn event_name_without_data_is_discarded_and_reset() {
        assert_eq!(
            collect(&[b"event: ping\n\ndata: x\n\n"]),
            vec![(String::new(), "x".to_owned())]
        );
    }
}
