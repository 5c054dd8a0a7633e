//! The file formats a knowledge base accepts, recognised from the upload's file name, its
//! declared media type and its first bytes.

/// A document format the engine can extract text from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocumentFormat {
    /// PDF (`application/pdf`): text per page.
    Pdf,
    /// Word 2007+ (`.docx`): paragraphs, sections by heading.
    Docx,
    /// Plain text, UTF-8.
    Text,
    /// Markdown: sections by heading.
    Markdown,
    /// HTML: visible text, sections by heading.
    Html,
    /// CSV: one line per row, `column: value` pairs.
    Csv,
}

/// Every accepted format, for error messages.
pub const ACCEPTED: &str = "PDF, DOCX, TXT, Markdown, HTML or CSV";

impl DocumentFormat {
    /// Every format.
    pub const ALL: [DocumentFormat; 6] = [
        DocumentFormat::Pdf,
        DocumentFormat::Docx,
        DocumentFormat::Text,
        DocumentFormat::Markdown,
        DocumentFormat::Html,
        DocumentFormat::Csv,
    ];

    /// The media type stored with the document.
    pub fn media_type(self) -> &'static str {
        match self {
            DocumentFormat::Pdf => "application/pdf",
            DocumentFormat::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            DocumentFormat::Text => "text/plain",
            DocumentFormat::Markdown => "text/markdown",
            DocumentFormat::Html => "text/html",
            DocumentFormat::Csv => "text/csv",
        }
    }

    /// The format stored as `media_type` ([`DocumentFormat::media_type`]).
    pub fn from_media_type(media_type: &str) -> Option<DocumentFormat> {
        let base = media_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        Some(match base.as_str() {
            "application/pdf" => DocumentFormat::Pdf,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => {
                DocumentFormat::Docx
            }
            "text/plain" => DocumentFormat::Text,
            "text/markdown" | "text/x-markdown" => DocumentFormat::Markdown,
            "text/html" | "application/xhtml+xml" => DocumentFormat::Html,
            "text/csv" | "application/csv" => DocumentFormat::Csv,
            _ => return None,
        })
    }

    /// The format of an upload: by the file name's extension, else by the declared media type
    /// (`application/octet-stream` says nothing). `None` when neither names an accepted format.
    pub fn detect(file_name: &str, declared: Option<&str>) -> Option<DocumentFormat> {
        let ext = file_name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        let by_ext = match ext.as_str() {
            "pdf" => Some(DocumentFormat::Pdf),
            "docx" => Some(DocumentFormat::Docx),
            "txt" | "text" => Some(DocumentFormat::Text),
            "md" | "markdown" => Some(DocumentFormat::Markdown),
            "html" | "htm" | "xhtml" => Some(DocumentFormat::Html),
            "csv" => Some(DocumentFormat::Csv),
            _ => None,
        };
        by_ext.or_else(|| declared.and_then(DocumentFormat::from_media_type))
    }

    /// Whether `bytes` can be this format: PDF starts with `%PDF-`, DOCX is a zip, the text
    /// formats are UTF-8 (a byte-order mark allowed) without NUL bytes. Cheap; extraction
    /// checks the rest.
    pub fn matches(self, bytes: &[u8]) -> bool {
        match self {
            DocumentFormat::Pdf => bytes.starts_with(b"%PDF-"),
            DocumentFormat::Docx => bytes.starts_with(b"PK\x03\x04"),
            _ => !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_extension_then_media_type() {
        assert_eq!(
            DocumentFormat::detect("Guide.PDF", Some("application/octet-stream")),
            Some(DocumentFormat::Pdf)
        );
        assert_eq!(
            DocumentFormat::detect("notes", Some("text/markdown; charset=utf-8")),
            Some(DocumentFormat::Markdown)
        );
        assert_eq!(DocumentFormat::detect("a.exe", None), None);
        assert_eq!(DocumentFormat::detect("a.png", Some("image/png")), None);
        for f in DocumentFormat::ALL {
            assert_eq!(DocumentFormat::from_media_type(f.media_type()), Some(f));
        }
    }

    #[test]
    fn sniffs_content() {
        assert!(DocumentFormat::Pdf.matches(b"%PDF-1.5\n"));
        assert!(!DocumentFormat::Pdf.matches(b"hello"));
        assert!(DocumentFormat::Docx.matches(b"PK\x03\x04rest"));
        assert!(DocumentFormat::Text.matches("héllo".as_bytes()));
        assert!(!DocumentFormat::Csv.matches(b"a,b\x00"));
        assert!(!DocumentFormat::Html.matches(&[0xff, 0xfe, 0x41]));
    }
}
