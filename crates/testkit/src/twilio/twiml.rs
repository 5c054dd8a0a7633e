//! A small TwiML reader for the fake Twilio: enough XML (elements, attributes, text, entities,
//! declarations and comments) to read what an engine answers to a voice webhook. Written
//! independently of the engine's TwiML builder so a mistake there is not mirrored here.

use serde::Serialize;

/// Why a TwiML document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwimlParseError {
    /// Not well-formed XML (as far as this reader checks).
    #[error("malformed XML at byte {at}: {reason}")]
    Malformed {
        /// Byte offset of the problem.
        at: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The root element is not `<Response>`.
    #[error("root element is <{0}>, not <Response>")]
    NotResponse(String),
}

/// An XML element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Tag name.
    pub name: String,
    /// Attributes in document order, values unescaped.
    pub attrs: Vec<(String, String)>,
    /// Child nodes.
    pub children: Vec<Node>,
}

impl Element {
    /// Value of attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Concatenated text of direct text children.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for c in &self.children {
            if let Node::Text(t) = c {
                s.push_str(t);
            }
        }
        s
    }

    /// Child elements.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|c| match c {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }
}

/// An XML node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Text (entities resolved).
    Text(String),
}

/// `<Connect><Stream>` as the fake reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TwimlStream {
    /// `url` attribute.
    pub url: String,
    /// `name` attribute.
    pub name: Option<String>,
    /// `statusCallback` attribute.
    pub status_callback: Option<String>,
    /// `statusCallbackMethod` attribute.
    pub status_callback_method: Option<String>,
    /// `<Parameter name value/>`s in order.
    pub parameters: Vec<(String, String)>,
}

/// `<Dial>` as the fake reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TwimlDial {
    /// The `<Number>` (or bare text) dialled.
    pub number: String,
    /// `callerId` attribute.
    pub caller_id: Option<String>,
}

/// What a TwiML response asks Twilio to do, flattened for assertions.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ParsedTwiml {
    /// Top-level verb names in order (`Connect`, `Say`, `Dial`, `Hangup`, …).
    pub verbs: Vec<String>,
    /// The first `<Connect><Stream>`.
    pub stream: Option<TwimlStream>,
    /// Texts of `<Say>` verbs.
    pub says: Vec<String>,
    /// The first `<Dial>`.
    pub dial: Option<TwimlDial>,
    /// Whether a `<Hangup/>` is present.
    pub hangup: bool,
    /// True if a unidirectional `<Start><Stream>` was used (the fake does not stream those).
    pub start_stream: bool,
}

/// Parses a TwiML document into its verbs.
pub fn parse_twiml(xml: &str) -> Result<ParsedTwiml, TwimlParseError> {
    let root = parse_xml(xml)?;
    if root.name != "Response" {
        return Err(TwimlParseError::NotResponse(root.name));
    }
    let mut out = ParsedTwiml::default();
    for verb in root.elements() {
        out.verbs.push(verb.name.clone());
        match verb.name.as_str() {
            "Connect" => {
                if out.stream.is_none()
                    && let Some(s) = verb.elements().find(|e| e.name == "Stream")
                {
                    out.stream = Some(TwimlStream {
                        url: s.attr("url").unwrap_or_default().to_owned(),
                        name: s.attr("name").map(str::to_owned),
                        status_callback: s.attr("statusCallback").map(str::to_owned),
                        status_callback_method: s.attr("statusCallbackMethod").map(str::to_owned),
                        parameters: s
                            .elements()
                            .filter(|p| p.name == "Parameter")
                            .map(|p| {
                                (
                                    p.attr("name").unwrap_or_default().to_owned(),
                                    p.attr("value").unwrap_or_default().to_owned(),
                                )
                            })
                            .collect(),
                    });
                }
            }
            "Start" => out.start_stream |= verb.elements().any(|e| e.name == "Stream"),
            "Say" => out.says.push(verb.text()),
            "Dial" if out.dial.is_none() => {
                let number = verb
                    .elements()
                    .find(|e| e.name == "Number")
                    .map(|n| n.text())
                    .unwrap_or_else(|| verb.text());
                out.dial = Some(TwimlDial {
                    number: number.trim().to_owned(),
                    caller_id: verb.attr("callerId").map(str::to_owned),
                });
            }
            "Hangup" => out.hangup = true,
            _ => {}
        }
    }
    Ok(out)
}

struct Reader<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, reason: &'static str) -> TwimlParseError {
        TwimlParseError::Malformed {
            at: self.pos,
            reason,
        }
    }
    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }
    fn skip_ws(&mut self) {
        let r = self.rest();
        self.pos += r.len() - r.trim_start().len();
    }
    fn skip_past(&mut self, pat: &str, reason: &'static str) -> Result<(), TwimlParseError> {
        match self.rest().find(pat) {
            Some(i) => {
                self.pos += i + pat.len();
                Ok(())
            }
            None => Err(self.err(reason)),
        }
    }
    /// Skips declarations, processing instructions, comments, doctype and whitespace.
    fn skip_misc(&mut self) -> Result<(), TwimlParseError> {
        loop {
            self.skip_ws();
            let r = self.rest();
            if r.starts_with("<?") {
                self.skip_past("?>", "unterminated processing instruction")?;
            } else if r.starts_with("<!--") {
                self.skip_past("-->", "unterminated comment")?;
            } else if r.starts_with("<!") {
                self.skip_past(">", "unterminated declaration")?;
            } else {
                return Ok(());
            }
        }
    }
    fn name(&mut self) -> Result<String, TwimlParseError> {
        let r = self.rest();
        let len = r
            .find(|c: char| c.is_whitespace() || matches!(c, '/' | '>' | '=' | '<'))
            .unwrap_or(r.len());
        if len == 0 {
            return Err(self.err("expected a name"));
        }
        self.pos += len;
        Ok(r[..len].to_owned())
    }
    fn element(&mut self, depth: usize) -> Result<Element, TwimlParseError> {
        if depth > 64 {
            return Err(self.err("nesting too deep"));
        }
        if !self.rest().starts_with('<') {
            return Err(self.err("expected '<'"));
        }
        self.pos += 1;
        let name = self.name()?;
        let mut attrs = Vec::new();
        loop {
            self.skip_ws();
            let r = self.rest();
            if r.starts_with("/>") {
                self.pos += 2;
                return Ok(Element {
                    name,
                    attrs,
                    children: Vec::new(),
                });
            }
            if r.starts_with('>') {
                self.pos += 1;
                break;
            }
            let key = self.name()?;
            self.skip_ws();
            if !self.rest().starts_with('=') {
                return Err(self.err("expected '=' after attribute name"));
            }
            self.pos += 1;
            self.skip_ws();
            let quote = match self.rest().chars().next() {
                Some(q @ ('"' | '\'')) => q,
                _ => return Err(self.err("attribute value must be quoted")),
            };
            self.pos += 1;
            let r = self.rest();
            let end = r
                .find(quote)
                .ok_or_else(|| self.err("unterminated attribute value"))?;
            let value = unescape(&r[..end]).ok_or_else(|| self.err("bad entity in attribute"))?;
            self.pos += end + 1;
            attrs.push((key, value));
        }
        let mut children = Vec::new();
        loop {
            let r = self.rest();
            if r.is_empty() {
                return Err(self.err("unterminated element"));
            }
            if r.starts_with("</") {
                self.pos += 2;
                let close = self.name()?;
                if close != name {
                    return Err(self.err("mismatched closing tag"));
                }
                self.skip_ws();
                if !self.rest().starts_with('>') {
                    return Err(self.err("expected '>'"));
                }
                self.pos += 1;
                return Ok(Element {
                    name,
                    attrs,
                    children,
                });
            }
            if r.starts_with("<!--") {
                self.skip_past("-->", "unterminated comment")?;
                continue;
            }
            if r.starts_with("<![CDATA[") {
                self.pos += 9;
                let r = self.rest();
                let end = r
                    .find("]]>")
                    .ok_or_else(|| self.err("unterminated CDATA"))?;
                children.push(Node::Text(r[..end].to_owned()));
                self.pos += end + 3;
                continue;
            }
            if r.starts_with('<') {
                children.push(Node::Element(self.element(depth + 1)?));
                continue;
            }
            let end = r.find('<').unwrap_or(r.len());
            let text = unescape(&r[..end]).ok_or_else(|| self.err("bad entity in text"))?;
            if !text.trim().is_empty() {
                children.push(Node::Text(text));
            }
            self.pos += end;
        }
    }
}

/// Parses a whole XML document and returns its root element.
pub fn parse_xml(xml: &str) -> Result<Element, TwimlParseError> {
    let mut r = Reader { s: xml, pos: 0 };
    r.skip_misc()?;
    let root = r.element(0)?;
    r.skip_misc()?;
    if !r.rest().is_empty() {
        return Err(r.err("content after the root element"));
    }
    Ok(root)
}

fn unescape(s: &str) -> Option<String> {
    if !s.contains('&') {
        return Some(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let end = rest.find(';')?;
        let ent = &rest[..end];
        let c = match ent {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ if ent.starts_with("#x") || ent.starts_with("#X") => {
                char::from_u32(u32::from_str_radix(&ent[2..], 16).ok()?)?
            }
            _ if ent.starts_with('#') => char::from_u32(ent[1..].parse().ok()?)?,
            _ => return None,
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}
