//! Text out of an uploaded file, by page (PDF) or section (a heading of Markdown, HTML or DOCX),
//! with pure-Rust parsers: `lopdf` (PDF pages, decompression bounded by [`crate::pdf_limits`]), `zip` + `quick-xml`
//! (DOCX's `word/document.xml`), `html5gum` (HTML tokens), `csv`.

use std::io::Read;

use crate::format::DocumentFormat;
use crate::pdf_limits::{self, DEFAULT_PDF_LIMITS, PdfLimits};

/// A part of a document with its place in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Page number from 1 (PDF only).
    pub page: Option<u32>,
    /// The heading the text sits under, when the format has headings.
    pub heading: Option<String>,
    /// The text, paragraphs separated by blank lines.
    pub text: String,
}

/// Why no text could be taken out of a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// The file holds no text (an empty file, a scanned PDF without a text layer).
    #[error("the document contains no extractable text")]
    NoText,
    /// The bytes are not what the format says (a broken or mislabelled file).
    #[error("the file is not a valid {format}: {detail}")]
    Malformed {
        /// The format it was taken for.
        format: &'static str,
        /// The parser's words.
        detail: String,
    },
    /// An encrypted PDF or DOCX: its text cannot be read without the password.
    #[error("the document is encrypted")]
    Encrypted,
    /// A PDF whose streams decompress past a limit ([`crate::pdf_limits::PdfLimits`]): a
    /// decompression bomb, or a file too large to process.
    #[error(
        "the document decompresses to more than {limit_bytes} bytes (refused as a possible decompression bomb)"
    )]
    TooLarge {
        /// The limit passed (per stream or per document), bytes.
        limit_bytes: u64,
    },
}

/// Largest `word/document.xml` read from a DOCX, bytes (a zip bomb stops there).
pub const MAX_DOCX_XML_BYTES: u64 = 64 * 1024 * 1024;

/// The sections of `bytes` read as `format`; sections without text are dropped.
pub fn extract(format: DocumentFormat, bytes: &[u8]) -> Result<Vec<Section>, ExtractError> {
    let sections = match format {
        DocumentFormat::Pdf => pdf(bytes, DEFAULT_PDF_LIMITS)?,
        DocumentFormat::Docx => docx(bytes)?,
        DocumentFormat::Text => vec![Section {
            page: None,
            heading: None,
            text: normalise(&utf8(bytes)),
        }],
        DocumentFormat::Markdown => markdown(&utf8(bytes)),
        DocumentFormat::Html => html(&utf8(bytes)),
        DocumentFormat::Csv => csv_rows(bytes)?,
    };
    let sections: Vec<Section> = sections
        .into_iter()
        .filter(|s| !s.text.trim().is_empty())
        .collect();
    if sections.is_empty() {
        return Err(ExtractError::NoText);
    }
    Ok(sections)
}

fn utf8(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

/// Line ends as `\n`, spaces and tabs inside a line collapsed, at most one blank line in a row,
/// no spaces at line ends.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.replace("\r\n", "\n").replace('\r', "\n").lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            blank_run += 1;
            if blank_run == 1 && !out.is_empty() {
                out.push('\n');
            }
            continue;
        }
        blank_run = 0;
        out.push_str(&line);
        out.push('\n');
    }
    out.trim_end().to_owned()
}

/// The pages of a PDF, its streams' decompression bounded by `limits`.
pub fn pdf(bytes: &[u8], limits: PdfLimits) -> Result<Vec<Section>, ExtractError> {
    let malformed = |e: lopdf::Error| ExtractError::Malformed {
        format: "PDF",
        detail: e.to_string(),
    };
    // lopdf decrypts (and inflates) an encrypted file's object streams before any check.
    if pdf_limits::find(bytes, b"/Encrypt").is_some() {
        return Err(ExtractError::Encrypted);
    }
    let doc = pdf_limits::load(bytes, limits)
        .map_err(|o| ExtractError::TooLarge {
            limit_bytes: o.limit_bytes,
        })?
        .map_err(malformed)?;
    if doc.is_encrypted() {
        return Err(ExtractError::Encrypted);
    }
    let mut out = Vec::new();
    for page in doc.get_pages().into_keys() {
        // A page whose text cannot be decoded is skipped rather than failing the document.
        match doc.extract_text(&[page]) {
            Ok(text) => out.push(Section {
                page: Some(page),
                heading: None,
                text: normalise(&text),
            }),
            Err(e) => tracing::debug!(page, error = %e, "pdf page without readable text"),
        }
    }
    Ok(out)
}

fn docx(bytes: &[u8]) -> Result<Vec<Section>, ExtractError> {
    let malformed = |detail: String| ExtractError::Malformed {
        format: "DOCX",
        detail,
    };
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| malformed(e.to_string()))?;
    if archive.index_for_name("EncryptedPackage").is_some() {
        return Err(ExtractError::Encrypted);
    }
    let entry = archive
        .by_name("word/document.xml")
        .map_err(|_| malformed("no word/document.xml".to_owned()))?;
    let mut xml = Vec::new();
    entry
        .take(MAX_DOCX_XML_BYTES)
        .read_to_end(&mut xml)
        .map_err(|e| malformed(e.to_string()))?;
    docx_xml(&String::from_utf8_lossy(&xml)).map_err(malformed)
}

/// The sections of a DOCX main part: `w:p` paragraphs of `w:t` runs (`w:tab` a tab, `w:br`
/// a line break), a paragraph styled `Heading…`/`Title` starting a new section.
fn docx_xml(xml: &str) -> Result<Vec<Section>, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut sections = vec![Section {
        page: None,
        heading: None,
        text: String::new(),
    }];
    let mut paragraph = String::new();
    let mut heading_paragraph = false;
    let mut in_text = false;
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == "pStyle" => {
                if let Ok(Some(v)) = e.try_get_attribute("w:val") {
                    let style = v.value.to_ascii_lowercase();
                    heading_paragraph = style.starts_with("heading") || style == "title";
                }
            }
            Event::Start(e) if e.local_name().as_ref() == "t" => in_text = true,
            Event::End(e) if e.local_name().as_ref() == "t" => in_text = false,
            Event::Empty(e) if e.local_name().as_ref() == "tab" => paragraph.push('\t'),
            Event::Empty(e) if matches!(e.local_name().as_ref(), "br" | "cr") => {
                paragraph.push('\n')
            }
            Event::Text(t) if in_text => paragraph.push_str(&t.xml10_content()),
            Event::CData(t) if in_text => paragraph.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if in_text => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    paragraph.push(c);
                } else if let Ok(s) =
                    quick_xml::escape::unescape(&format!("&{};", r.xml10_content()))
                {
                    paragraph.push_str(&s);
                }
            }
            Event::End(e) if e.local_name().as_ref() == "p" => {
                let text = paragraph.trim().to_owned();
                paragraph.clear();
                if heading_paragraph && !text.is_empty() {
                    sections.push(Section {
                        page: None,
                        heading: Some(text.clone()),
                        text: String::new(),
                    });
                }
                heading_paragraph = false;
                if !text.is_empty()
                    && let Some(s) = sections.last_mut()
                {
                    s.text.push_str(&text);
                    s.text.push_str("\n\n");
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    for s in &mut sections {
        s.text = normalise(&s.text);
    }
    Ok(sections)
}

/// ATX headings (`#` … `######`) start sections; the heading line stays in the text.
fn markdown(text: &str) -> Vec<Section> {
    let mut sections = vec![Section {
        page: None,
        heading: None,
        text: String::new(),
    }];
    let mut fenced = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
        }
        let hashes = trimmed.chars().take_while(|c| *c == '#').count();
        let is_heading = !fenced
            && (1..=6).contains(&hashes)
            && trimmed[hashes..].starts_with(char::is_whitespace);
        if is_heading {
            let title = trimmed[hashes..].trim().trim_end_matches('#').trim();
            sections.push(Section {
                page: None,
                heading: Some(title.to_owned()).filter(|t| !t.is_empty()),
                text: String::new(),
            });
        }
        if let Some(s) = sections.last_mut() {
            s.text.push_str(line);
            s.text.push('\n');
        }
    }
    for s in &mut sections {
        s.text = normalise(&s.text);
    }
    sections
}

/// Elements whose content is not shown.
const HIDDEN: [&[u8]; 7] = [
    b"script",
    b"style",
    b"noscript",
    b"template",
    b"svg",
    b"head",
    b"iframe",
];

/// Elements that end a line of text.
const BLOCKS: [&[u8]; 24] = [
    b"p",
    b"div",
    b"br",
    b"li",
    b"ul",
    b"ol",
    b"tr",
    b"table",
    b"section",
    b"article",
    b"header",
    b"footer",
    b"h1",
    b"h2",
    b"h3",
    b"h4",
    b"h5",
    b"h6",
    b"blockquote",
    b"pre",
    b"dt",
    b"dd",
    b"hr",
    b"title",
];

/// The visible text of an HTML page, a section per `h1`–`h6`.
fn html(source: &str) -> Vec<Section> {
    use html5gum::{DefaultEmitter, Token, Tokenizer};
    let mut emitter = DefaultEmitter::default();
    // Script and style contents are raw text, not markup.
    emitter.naively_switch_states(true);
    let mut sections = vec![Section {
        page: None,
        heading: None,
        text: String::new(),
    }];
    let mut hidden_depth = 0usize;
    let mut heading: Option<String> = None;
    for token in Tokenizer::new_with_emitter(source, emitter).flatten() {
        match token {
            Token::StartTag(tag) => {
                let name = tag.name.to_ascii_lowercase();
                if HIDDEN.contains(&name.as_slice()) && !tag.self_closing {
                    hidden_depth += 1;
                } else if hidden_depth == 0 {
                    if is_heading(&name) {
                        heading = Some(String::new());
                    }
                    if BLOCKS.contains(&name.as_slice())
                        && let Some(s) = sections.last_mut()
                    {
                        s.text.push('\n');
                    }
                }
            }
            Token::EndTag(tag) => {
                let name = tag.name.to_ascii_lowercase();
                if HIDDEN.contains(&name.as_slice()) {
                    hidden_depth = hidden_depth.saturating_sub(1);
                } else if hidden_depth == 0 {
                    if is_heading(&name)
                        && let Some(title) = heading.take()
                    {
                        let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
                        sections.push(Section {
                            page: None,
                            heading: Some(title.clone()).filter(|t| !t.is_empty()),
                            text: format!("{title}\n"),
                        });
                        continue;
                    }
                    if BLOCKS.contains(&name.as_slice())
                        && let Some(s) = sections.last_mut()
                    {
                        s.text.push('\n');
                    }
                }
            }
            Token::String(s) if hidden_depth == 0 => {
                let text = String::from_utf8_lossy(&s);
                match heading.as_mut() {
                    Some(h) => h.push_str(&text),
                    None => {
                        if let Some(sec) = sections.last_mut() {
                            sec.text.push_str(&text);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    for s in &mut sections {
        s.text = normalise(&s.text);
    }
    sections
}

fn is_heading(name: &[u8]) -> bool {
    matches!(name, [b'h', b'1'..=b'6'])
}

/// One line per row: `column: value; column: value` with the header row's names (a row
/// without a header name keeps its value alone).
fn csv_rows(bytes: &[u8]) -> Result<Vec<Section>, ExtractError> {
    let text = utf8(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(text.as_bytes());
    let malformed = |e: csv::Error| ExtractError::Malformed {
        format: "CSV",
        detail: e.to_string(),
    };
    let headers: Vec<String> = reader
        .headers()
        .map_err(malformed)?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let mut out = String::new();
    for record in reader.records() {
        let record = record.map_err(malformed)?;
        let cells: Vec<String> = record
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(i, v)| match headers.get(i).filter(|h| !h.is_empty()) {
                Some(h) => format!("{h}: {}", v.trim()),
                None => v.trim().to_owned(),
            })
            .collect();
        if !cells.is_empty() {
            out.push_str(&cells.join("; "));
            out.push('\n');
        }
    }
    if out.is_empty() {
        // A header row alone is still text.
        out = headers.join("; ");
    }
    Ok(vec![Section {
        page: None,
        heading: None,
        text: normalise(&out),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_normalised_and_empty_refused() {
        let s = extract(
            DocumentFormat::Text,
            b"\xEF\xBB\xBFHello   world\r\n\r\n\r\nBye\t now ",
        )
        .unwrap();
        assert_eq!(s[0].text, "Hello world\n\nBye now");
        assert_eq!(
            extract(DocumentFormat::Text, b"  \n\t "),
            Err(ExtractError::NoText)
        );
    }

    #[test]
    fn markdown_sections_by_heading() {
        let md = "Intro line.\n\n# Opening hours\nNine to five.\n\n```\n# not a heading\n```\n## Parking #\nFree.";
        let s = extract(DocumentFormat::Markdown, md.as_bytes()).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].heading, None);
        assert_eq!(s[1].heading.as_deref(), Some("Opening hours"));
        assert!(s[1].text.contains("# not a heading"));
        assert_eq!(s[2].heading.as_deref(), Some("Parking"));
        assert!(s[2].text.ends_with("Free."));
    }

    #[test]
    fn html_visible_text_by_heading() {
        let page = "<html><head><title>T</title><style>p{color:red}</style></head><body>\
            <script>var x = '<h1>no</h1>';</script><p>Welcome&nbsp;to <b>Acme</b> &amp; co.</p>\
            <h2>Returns</h2><div>Within 30 days.<br>Keep the receipt.</div></body></html>";
        let s = extract(DocumentFormat::Html, page.as_bytes()).unwrap();
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].text, "Welcome to Acme & co.");
        assert_eq!(s[1].heading.as_deref(), Some("Returns"));
        assert_eq!(s[1].text, "Returns\n\nWithin 30 days.\nKeep the receipt.");
        assert!(
            !s.iter()
                .any(|x| x.text.contains("color") || x.text.contains("var x"))
        );
    }

    #[test]
    fn csv_rows_with_headers() {
        let s = extract(
            DocumentFormat::Csv,
            b"product,price\nWidget,\"3,50\"\nGadget,\n,\n",
        )
        .unwrap();
        assert_eq!(s[0].text, "product: Widget; price: 3,50\nproduct: Gadget");
    }

    #[test]
    fn docx_paragraphs_and_headings() {
        let xml = r#"<?xml version="1.0"?><w:document xmlns:w="x"><w:body>
            <w:p><w:r><w:t>Intro &amp; more</w:t></w:r></w:p>
            <w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Hours</w:t></w:r></w:p>
            <w:p><w:r><w:t xml:space="preserve">Nine </w:t></w:r><w:r><w:tab/><w:t>to five&#46;</w:t></w:r></w:p>
            </w:body></w:document>"#;
        let s = docx_xml(xml).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].text, "Intro & more");
        assert_eq!(s[1].heading.as_deref(), Some("Hours"));
        assert_eq!(s[1].text, "Hours\n\nNine to five.");
    }

    #[test]
    fn broken_binaries_are_malformed() {
        assert!(matches!(
            extract(DocumentFormat::Pdf, b"%PDF-1.4 garbage"),
            Err(ExtractError::Malformed { format: "PDF", .. })
        ));
        assert!(matches!(
            extract(DocumentFormat::Docx, b"PK\x03\x04garbage"),
            Err(ExtractError::Malformed { format: "DOCX", .. })
        ));
    }
}
