//! CSV rows for the export endpoints (RFC 4180: comma-separated, CRLF line ends, fields with
//! a comma, quote or line break quoted, quotes doubled), and the download response they go out
//! in. A text cell that a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`,
//! tab or carriage return) is prefixed with `'` (OWASP's CSV-injection advice), since
//! exported fields hold what callers and tenants typed.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

/// Writes one CSV row into a buffer, field by field; [`CsvRow::end`] closes the row.
pub struct CsvRow<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> CsvRow<'a> {
    /// Starts a row at the end of `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        CsvRow { out, first: true }
    }

    fn sep(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    /// A text field, quoted and defused as needed.
    pub fn text(&mut self, s: &str) {
        self.sep();
        let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']) && !is_plain_number(s);
        let quote = formula || s.contains([',', '"', '\n', '\r']);
        if quote {
            self.out.push(b'"');
        }
        if formula {
            self.out.push(b'\'');
        }
        for b in s.bytes() {
            if b == b'"' {
                self.out.push(b'"');
            }
            self.out.push(b);
        }
        if quote {
            self.out.push(b'"');
        }
    }

    /// An integer field.
    pub fn num(&mut self, n: i64) {
        self.sep();
        self.out.extend_from_slice(n.to_string().as_bytes());
    }

    /// An integer field, empty for `None`.
    pub fn opt_num(&mut self, n: Option<i64>) {
        match n {
            Some(n) => self.num(n),
            None => self.sep(),
        }
    }

    /// A decimal field (shortest form that reads back the same value).
    pub fn float(&mut self, v: f64) {
        self.sep();
        self.out.extend_from_slice(v.to_string().as_bytes());
    }

    /// Ends the row (CRLF).
    pub fn end(self) {
        self.out.extend_from_slice(b"\r\n");
    }
}

/// `+15551234567`, `-12`, `-0.5`: a sign and digits (with at most one dot) is data, not a
/// formula, and stays as it is (E.164 numbers start with `+`).
fn is_plain_number(s: &str) -> bool {
    let rest = &s[1..];
    !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && rest.bytes().filter(|b| *b == b'.').count() <= 1
        && (s.starts_with('+') || s.starts_with('-'))
}

/// A 200 download of `body` as `filename` (`Content-Disposition: attachment`).
pub fn attachment(content_type: &'static str, filename: &str, body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // File names are built by the server from ids and fixed words: always a valid header.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(fields: &[&str]) -> String {
        let mut out = Vec::new();
        let mut r = CsvRow::new(&mut out);
        for f in fields {
            r.text(f);
        }
        r.end();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn quotes_only_what_needs_it_and_doubles_quotes() {
        assert_eq!(row(&["a", "b c"]), "a,b c\r\n");
        assert_eq!(
            row(&["x,y", "say \"hi\""]),
            "\"x,y\",\"say \"\"hi\"\"\"\r\n"
        );
        assert_eq!(row(&["two\nlines"]), "\"two\nlines\"\r\n");
        assert_eq!(row(&[""]), "\r\n");
    }

    #[test]
    fn formulas_are_defused() {
        assert_eq!(
            row(&["=HYPERLINK(\"x\")"]),
            "\"'=HYPERLINK(\"\"x\"\")\"\r\n"
        );
        assert_eq!(row(&["+SUM(A1)"]), "\"'+SUM(A1)\"\r\n");
        assert_eq!(row(&["-1+A1"]), "\"'-1+A1\"\r\n");
        assert_eq!(row(&["+15551234567", "-0.5"]), "+15551234567,-0.5\r\n");
    }

    #[test]
    fn numbers_and_empty_options() {
        let mut out = Vec::new();
        let mut r = CsvRow::new(&mut out);
        r.num(-5);
        r.opt_num(None);
        r.float(1.5);
        r.end();
        assert_eq!(String::from_utf8(out).unwrap(), "-5,,1.5\r\n");
    }
}
