//! TwiML construction (`docs/providers/twilio.md#twiml`). Every attribute value and text node is
//! XML-escaped, so caller-controlled data (names, numbers, messages, parameters) can never change
//! the document's structure.
//!
//! ```
//! use switchboard_telephony::twiml::{Response, Stream};
//! let stream = Stream::new("wss://calls.example.com/twilio/stream")
//!     .unwrap()
//!     .parameter("token", "abc")
//!     .status_callback("https://calls.example.com/twilio/stream-status");
//! let xml = Response::new().connect_stream(stream).to_xml();
//! assert!(xml.contains(r#"<Parameter name="token" value="abc"/>"#));
//! ```

use std::fmt::Write as _;

/// Why a TwiML element could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwimlError {
    /// The stream URL is not an absolute URL.
    #[error("stream url is not a valid absolute URL")]
    InvalidUrl,
    /// Twilio only connects media streams over `wss://`.
    #[error("stream url scheme must be wss, got {0}")]
    NotWss(String),
    /// Twilio drops query strings on stream URLs; per-call data belongs in `<Parameter>`s.
    #[error("stream url must not carry a query string (use <Parameter>)")]
    QueryString,
    /// A fragment would be meaningless to Twilio and hints at a bug.
    #[error("stream url must not carry a fragment")]
    Fragment,
}

/// `<Stream>` inside `<Connect>`: a bidirectional media stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    url: String,
    name: Option<String>,
    status_callback: Option<String>,
    status_callback_method: Option<String>,
    parameters: Vec<(String, String)>,
}

impl Stream {
    /// A stream to `url`, which must be absolute, `wss://`, with no query string or fragment.
    pub fn new(url: &str) -> Result<Stream, TwimlError> {
        check_stream_url(url)?;
        Ok(Stream {
            url: url.to_owned(),
            name: None,
            status_callback: None,
            status_callback_method: None,
            parameters: Vec::new(),
        })
    }

    /// Sets the stream's unique `name` within the call.
    pub fn name(mut self, name: &str) -> Stream {
        self.name = Some(name.to_owned());
        self
    }

    /// Sets `statusCallback`: where Twilio posts stream-started / stream-stopped / stream-error.
    pub fn status_callback(mut self, url: &str) -> Stream {
        self.status_callback = Some(url.to_owned());
        self
    }

    /// Sets `statusCallbackMethod` (`GET` or `POST`; Twilio's default is `POST`).
    pub fn status_callback_method(mut self, method: &str) -> Stream {
        self.status_callback_method = Some(method.to_owned());
        self
    }

    /// Adds a `<Parameter name value/>`; it arrives in `start.customParameters`. Keep each
    /// name+value pair under about 500 characters (Twilio's limit).
    pub fn parameter(mut self, name: &str, value: &str) -> Stream {
        self.parameters.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The stream URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The parameters in insertion order.
    pub fn parameters(&self) -> &[(String, String)] {
        &self.parameters
    }
}

/// Checks a media-stream URL the way Twilio will use it: absolute, `wss` scheme, no query string,
/// no fragment.
pub fn check_stream_url(url: &str) -> Result<(), TwimlError> {
    let parsed = url::Url::parse(url).map_err(|_| TwimlError::InvalidUrl)?;
    if parsed.scheme() != "wss" {
        return Err(TwimlError::NotWss(parsed.scheme().to_owned()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(TwimlError::InvalidUrl);
    }
    // `Url::query` is None for "wss://h/p" but Some("") for "wss://h/p?": reject both a query and
    // a dangling '?'.
    if parsed.query().is_some() {
        return Err(TwimlError::QueryString);
    }
    if parsed.fragment().is_some() {
        return Err(TwimlError::Fragment);
    }
    Ok(())
}

/// `<Dial>`: connect the caller to another number (transfer, or the bypass list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    number: String,
    caller_id: Option<String>,
    timeout_s: Option<u32>,
    time_limit_s: Option<u32>,
    action: Option<String>,
}

impl Dial {
    /// Dial `number` (E.164, or a SIP URI Twilio accepts inside `<Number>`).
    pub fn number(number: &str) -> Dial {
        Dial {
            number: number.to_owned(),
            caller_id: None,
            timeout_s: None,
            time_limit_s: None,
            action: None,
        }
    }

    /// Sets `callerId`: the number the dialled party sees.
    pub fn caller_id(mut self, caller_id: &str) -> Dial {
        self.caller_id = Some(caller_id.to_owned());
        self
    }

    /// Sets `timeout`: seconds to ring before giving up (Twilio's default is 30 s).
    pub fn timeout_s(mut self, seconds: u32) -> Dial {
        self.timeout_s = Some(seconds);
        self
    }

    /// Sets `timeLimit`: maximum length of the dialled call in seconds.
    pub fn time_limit_s(mut self, seconds: u32) -> Dial {
        self.time_limit_s = Some(seconds);
        self
    }

    /// Sets `action`: URL Twilio requests when the dialled call ends.
    pub fn action(mut self, url: &str) -> Dial {
        self.action = Some(url.to_owned());
        self
    }
}

/// `<Say>`: text-to-speech by Twilio itself (used for the sorry message, where no assistant runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Say {
    text: String,
    voice: Option<String>,
    language: Option<String>,
}

impl Say {
    /// Say `text` in Twilio's default voice.
    pub fn new(text: &str) -> Say {
        Say {
            text: text.to_owned(),
            voice: None,
            language: None,
        }
    }

    /// Sets `voice` (e.g. `alice`, `Polly.Joanna`).
    pub fn voice(mut self, voice: &str) -> Say {
        self.voice = Some(voice.to_owned());
        self
    }

    /// Sets `language` (e.g. `en-US`).
    pub fn language(mut self, language: &str) -> Say {
        self.language = Some(language.to_owned());
        self
    }
}

/// One verb of a `<Response>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// `<Connect><Stream …>…</Stream></Connect>`: blocks until the stream's socket closes.
    ConnectStream(Stream),
    /// `<Say>`.
    Say(Say),
    /// `<Dial>` to one number.
    Dial(Dial),
    /// `<Pause length=…/>`, in seconds.
    Pause {
        /// Seconds of silence.
        length_s: u32,
    },
    /// `<Hangup/>`.
    Hangup,
    /// `<Reject reason="rejected"/>`: refuse an incoming call before it is answered (the
    /// caller hears a busy or not-in-service signal and nobody is billed for the call).
    Reject,
}

/// A TwiML `<Response>` document built verb by verb.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    verbs: Vec<Verb>,
}

impl Response {
    /// An empty response (Twilio hangs up on it).
    pub fn new() -> Response {
        Response::default()
    }

    /// Appends any verb.
    pub fn verb(mut self, verb: Verb) -> Response {
        self.verbs.push(verb);
        self
    }

    /// Appends `<Connect><Stream>`.
    pub fn connect_stream(self, stream: Stream) -> Response {
        self.verb(Verb::ConnectStream(stream))
    }

    /// Appends `<Say>`.
    pub fn say(self, say: Say) -> Response {
        self.verb(Verb::Say(say))
    }

    /// Appends `<Dial>`.
    pub fn dial(self, dial: Dial) -> Response {
        self.verb(Verb::Dial(dial))
    }

    /// Appends `<Pause length="…"/>` of `length_s` seconds.
    pub fn pause(self, length_s: u32) -> Response {
        self.verb(Verb::Pause { length_s })
    }

    /// Appends `<Hangup/>`.
    pub fn hangup(self) -> Response {
        self.verb(Verb::Hangup)
    }

    /// Appends `<Reject reason="rejected"/>`.
    pub fn reject(self) -> Response {
        self.verb(Verb::Reject)
    }

    /// The verbs in order.
    pub fn verbs(&self) -> &[Verb] {
        &self.verbs
    }

    /// Renders the document with an XML declaration.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        self.write_body(&mut out);
        out
    }

    /// Renders the document without the XML declaration (for the REST `Twiml` parameter).
    pub fn to_inline_xml(&self) -> String {
        let mut out = String::with_capacity(192);
        self.write_body(&mut out);
        out
    }

    fn write_body(&self, out: &mut String) {
        out.push_str("<Response>");
        for verb in &self.verbs {
            match verb {
                Verb::ConnectStream(s) => {
                    out.push_str("<Connect><Stream");
                    attr(out, "url", &s.url);
                    if let Some(n) = &s.name {
                        attr(out, "name", n);
                    }
                    if let Some(cb) = &s.status_callback {
                        attr(out, "statusCallback", cb);
                    }
                    if let Some(m) = &s.status_callback_method {
                        attr(out, "statusCallbackMethod", m);
                    }
                    if s.parameters.is_empty() {
                        out.push_str("/>");
                    } else {
                        out.push('>');
                        for (name, value) in &s.parameters {
                            out.push_str("<Parameter");
                            attr(out, "name", name);
                            attr(out, "value", value);
                            out.push_str("/>");
                        }
                        out.push_str("</Stream>");
                    }
                    out.push_str("</Connect>");
                }
                Verb::Say(s) => {
                    out.push_str("<Say");
                    if let Some(v) = &s.voice {
                        attr(out, "voice", v);
                    }
                    if let Some(l) = &s.language {
                        attr(out, "language", l);
                    }
                    out.push('>');
                    escape_into(out, &s.text);
                    out.push_str("</Say>");
                }
                Verb::Dial(d) => {
                    out.push_str("<Dial");
                    if let Some(c) = &d.caller_id {
                        attr(out, "callerId", c);
                    }
                    if let Some(t) = d.timeout_s {
                        let _ = write!(out, r#" timeout="{t}""#);
                    }
                    if let Some(t) = d.time_limit_s {
                        let _ = write!(out, r#" timeLimit="{t}""#);
                    }
                    if let Some(a) = &d.action {
                        attr(out, "action", a);
                    }
                    out.push_str("><Number>");
                    escape_into(out, &d.number);
                    out.push_str("</Number></Dial>");
                }
                Verb::Pause { length_s } => {
                    let _ = write!(out, r#"<Pause length="{length_s}"/>"#);
                }
                Verb::Hangup => out.push_str("<Hangup/>"),
                Verb::Reject => out.push_str(r#"<Reject reason="rejected"/>"#),
            }
        }
        out.push_str("</Response>");
    }
}

/// `<Say>message</Say><Hangup/>`: what a caller hears when no assistant can take the call (never
/// dead air).
pub fn say_and_hang_up(message: &str) -> Response {
    Response::new().say(Say::new(message)).hangup()
}

/// `<Dial callerId?><Number>number</Number></Dial>`: connect the caller straight to a person.
pub fn dial_number(number: &str, caller_id: Option<&str>) -> Response {
    let mut dial = Dial::number(number);
    if let Some(c) = caller_id {
        dial = dial.caller_id(c);
    }
    Response::new().dial(dial)
}

fn attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    escape_into(out, value);
    out.push('"');
}

/// Appends `text` XML-escaped for use in both attribute values (double-quoted) and text nodes.
/// Control characters that XML 1.0 forbids are dropped; tab, newline and carriage return in
/// attributes are written as character references so parsers do not normalise them away.
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

/// `text` XML-escaped (see [`escape_into`]).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    escape_into(&mut out, text);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_stream_full_document() {
        let s = Stream::new("wss://calls.example.com/twilio/stream")
            .unwrap()
            .status_callback("https://calls.example.com/twilio/status?x=1&y=2")
            .parameter("call_id", "c-1")
            .parameter("token", "a.b");
        let xml = Response::new().connect_stream(s).to_xml();
        assert_eq!(
            xml,
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect>"#,
                r#"<Stream url="wss://calls.example.com/twilio/stream" "#,
                r#"statusCallback="https://calls.example.com/twilio/status?x=1&amp;y=2">"#,
                r#"<Parameter name="call_id" value="c-1"/><Parameter name="token" value="a.b"/>"#,
                r#"</Stream></Connect></Response>"#
            )
        );
    }

    #[test]
    fn stream_without_parameters_self_closes() {
        let xml = Response::new()
            .connect_stream(Stream::new("wss://h:8443/s").unwrap().name("main"))
            .to_inline_xml();
        assert_eq!(
            xml,
            r#"<Response><Connect><Stream url="wss://h:8443/s" name="main"/></Connect></Response>"#
        );
    }

    #[test]
    fn stream_url_rules() {
        assert_eq!(
            Stream::new("wss://h/s?token=1").unwrap_err(),
            TwimlError::QueryString
        );
        assert_eq!(
            Stream::new("wss://h/s?").unwrap_err(),
            TwimlError::QueryString
        );
        assert_eq!(
            Stream::new("wss://h/s#f").unwrap_err(),
            TwimlError::Fragment
        );
        assert_eq!(
            Stream::new("https://h/s").unwrap_err(),
            TwimlError::NotWss("https".into())
        );
        assert_eq!(
            Stream::new("ws://h/s").unwrap_err(),
            TwimlError::NotWss("ws".into())
        );
        assert_eq!(
            Stream::new("/relative").unwrap_err(),
            TwimlError::InvalidUrl
        );
        assert!(Stream::new("wss://h/media/abc-123").is_ok());
    }

    #[test]
    fn everything_is_escaped() {
        let evil = r#"a"/><Hangup/><Say x='1'>&amp;</Say>"#;
        let s = Stream::new("wss://h/s").unwrap().parameter(evil, evil);
        let xml = Response::new()
            .connect_stream(s)
            .say(Say::new(evil).voice(evil))
            .dial(Dial::number(evil).caller_id(evil))
            .to_inline_xml();
        // The only structural Hangup-free document: no injected elements survive.
        assert!(!xml.contains("<Hangup/>"));
        assert!(!xml.contains("<Say x="));
        assert_eq!(xml.matches("<Say").count(), 1);
        assert!(xml.contains(
            "a&quot;/&gt;&lt;Hangup/&gt;&lt;Say x=&apos;1&apos;&gt;&amp;amp;&lt;/Say&gt;"
        ));
        assert_eq!(escape("line\nnext\u{0}"), "line&#10;next");
    }

    #[test]
    fn sorry_and_dial_helpers() {
        assert_eq!(
            say_and_hang_up("Sorry, this number is not in service.").to_inline_xml(),
            "<Response><Say>Sorry, this number is not in service.</Say><Hangup/></Response>"
        );
        assert_eq!(
            dial_number("+15551234567", Some("+15550000000")).to_inline_xml(),
            r#"<Response><Dial callerId="+15550000000"><Number>+15551234567</Number></Dial></Response>"#
        );
        assert_eq!(
            dial_number("+15551234567", None).to_inline_xml(),
            "<Response><Dial><Number>+15551234567</Number></Dial></Response>"
        );
        let combo = Response::new()
            .say(Say::new("Transferring you.").language("en-US"))
            .pause(1)
            .dial(
                Dial::number("+1")
                    .timeout_s(20)
                    .time_limit_s(600)
                    .action("https://h/a"),
            )
            .hangup()
            .to_inline_xml();
        assert_eq!(
            combo,
            concat!(
                r#"<Response><Say language="en-US">Transferring you.</Say><Pause length="1"/>"#,
                r#"<Dial timeout="20" timeLimit="600" action="https://h/a"><Number>+1</Number></Dial>"#,
                "<Hangup/></Response>"
            )
        );
    }
}
