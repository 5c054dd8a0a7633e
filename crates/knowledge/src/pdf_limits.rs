//! Bounded decompression of an uploaded PDF (a "decompression bomb" is refused, not inflated).
//!
//! `lopdf` 0.38 inflates streams whole, with no size limit, when it loads object streams and
//! cross-reference streams and when it reads page contents. Before it does, every stream is
//! decoded here through capped decoders (FlateDecode, LZWDecode, ASCII85Decode: the filters
//! lopdf decodes; the others it never decodes) and only counted: a stream past
//! [`PdfLimits::stream_bytes`], or a document whose streams together pass
//! [`PdfLimits::document_bytes`], stops the load. Image XObjects are not counted (text
//! extraction never decodes them). Objects are checked through lopdf's load filter
//! ([`lopdf::Reader::read`]); cross-reference streams, which lopdf decodes before any object,
//! are found in the raw bytes (`/Type /XRef`) and checked first.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::io::{Read, Write};

use lopdf::{Object, ObjectId, Stream};

/// Limits on what a PDF may decompress to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PdfLimits {
    /// Most bytes one stream may decode to.
    pub stream_bytes: u64,
    /// Most bytes all streams of the document may decode to together.
    pub document_bytes: u64,
}

/// The limits [`crate::extract::extract`] applies: 64 MiB per stream, 256 MiB per document
/// (text content streams are kilobytes; this leaves room for large fonts and forms).
pub const DEFAULT_PDF_LIMITS: PdfLimits = PdfLimits {
    stream_bytes: 64 * 1024 * 1024,
    document_bytes: 256 * 1024 * 1024,
};

/// Bytes of raw PDF after a `/XRef` name searched for its `stream` keyword.
const XREF_DICT_WINDOW: usize = 4096;

/// The budget of the load running on this thread (lopdf's load filter is a plain `fn`).
#[derive(Debug, Clone, Copy)]
struct Budget {
    limits: PdfLimits,
    used: u64,
    exceeded: bool,
}

thread_local! {
    static BUDGET: Cell<Option<Budget>> = const { Cell::new(None) };
    /// Streams already counted by this load (lopdf may read an object more than once).
    static COUNTED: RefCell<HashSet<ObjectId>> = RefCell::new(HashSet::new());
}

/// A PDF past its limits: the limit it passed, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    /// The limit passed (per stream or per document), bytes.
    pub limit_bytes: u64,
}

/// `bytes` loaded by lopdf with every stream's decoded size checked against `limits` first.
pub fn load(
    bytes: &[u8],
    limits: PdfLimits,
) -> Result<Result<lopdf::Document, lopdf::Error>, OverLimit> {
    let mut budget = Budget {
        limits,
        used: 0,
        exceeded: false,
    };
    for data in xref_stream_data(bytes) {
        let size = inflate_len(data, limits.stream_bytes);
        if !charge(&mut budget, size) {
            return Err(over(&budget));
        }
    }
    BUDGET.with(|b| b.set(Some(budget)));
    COUNTED.with(|c| c.borrow_mut().clear());
    let loaded = lopdf::Reader {
        buffer: bytes,
        document: lopdf::Document::new(),
        encryption_state: None,
        raw_objects: Default::default(),
    }
    .read(Some(check_object));
    let budget = BUDGET.with(|b| b.take()).unwrap_or(budget);
    if budget.exceeded {
        return Err(over(&budget));
    }
    Ok(loaded)
}

fn over(budget: &Budget) -> OverLimit {
    // Which limit: a stream alone past its cap, else the document's total.
    OverLimit {
        limit_bytes: if budget.used > budget.limits.document_bytes {
            budget.limits.document_bytes
        } else {
            budget.limits.stream_bytes
        },
    }
}

/// Adds `size` (`None`: one stream past the cap) to the budget; false once over a limit.
fn charge(budget: &mut Budget, size: Option<u64>) -> bool {
    match size {
        Some(n) => {
            budget.used = budget.used.saturating_add(n);
            if budget.used > budget.limits.document_bytes {
                budget.exceeded = true;
            }
        }
        None => budget.exceeded = true,
    }
    !budget.exceeded
}

/// lopdf's load filter: drops (and flags) a stream past the budget, so lopdf never decodes it.
fn check_object(id: ObjectId, object: &mut Object) -> Option<(ObjectId, Object)> {
    if let Object::Stream(stream) = object {
        let Some(mut budget) = BUDGET.with(Cell::get) else {
            return Some((id, Object::Null));
        };
        if budget.exceeded {
            return None;
        }
        let counted = !is_image(stream) && COUNTED.with(|c| c.borrow_mut().insert(id));
        let cap = budget.limits.stream_bytes;
        let ok = !counted || charge(&mut budget, decoded_len(stream, cap));
        BUDGET.with(|b| b.set(Some(budget)));
        // lopdf keeps the object it passed in; only objects inside object streams (never
        // streams) use the returned value.
        return ok.then_some((id, Object::Null));
    }
    Some((id, object.clone()))
}

fn is_image(stream: &Stream) -> bool {
    stream
        .dict
        .get(b"Subtype")
        .and_then(Object::as_name)
        .is_ok_and(|s| s == b"Image")
}

/// The size `stream` decodes to through its filters, `None` past `cap` bytes (at any stage).
/// Filters lopdf does not decode (images' DCT, CCITT, JBIG2, JPX…) end the chain.
fn decoded_len(stream: &Stream, cap: u64) -> Option<u64> {
    let Ok(filters) = stream.filters() else {
        return Some(stream.content.len() as u64);
    };
    let mut data: Option<Vec<u8>> = None;
    for filter in filters {
        let input: &[u8] = data.as_deref().unwrap_or(&stream.content);
        let out = match filter {
            b"FlateDecode" | b"Fl" => inflate(input, cap)?,
            b"LZWDecode" | b"LZW" => lzw(input, cap, early_change(stream))?,
            // At most 4 bytes out per byte in: bounded by the upload's size.
            b"ASCII85Decode" | b"A85" => {
                let mut s = Stream::new(
                    lopdf::dictionary! { "Filter" => "ASCII85Decode" },
                    input.to_vec(),
                );
                s.decompress().ok()?;
                s.content
            }
            _ => break,
        };
        data = Some(out);
    }
    let n = data.as_ref().map_or(stream.content.len(), Vec::len) as u64;
    (n <= cap).then_some(n)
}

fn early_change(stream: &Stream) -> bool {
    stream
        .dict
        .get(b"DecodeParms")
        .and_then(Object::as_dict)
        .and_then(|p| p.get(b"EarlyChange"))
        .and_then(Object::as_i64)
        .map_or(true, |v| v != 0)
}

/// `input` inflated (zlib), `None` past `cap` bytes. Like lopdf, a corrupt tail ends the data.
fn inflate(input: &[u8], cap: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let _ = flate2::read::ZlibDecoder::new(input)
        .take(cap.saturating_add(1))
        .read_to_end(&mut out);
    (out.len() as u64 <= cap).then_some(out)
}

/// The size `input` inflates to without keeping it, `None` past `cap` bytes.
fn inflate_len(input: &[u8], cap: u64) -> Option<u64> {
    let n = std::io::copy(
        &mut flate2::read::ZlibDecoder::new(input).take(cap.saturating_add(1)),
        &mut std::io::sink(),
    )
    .unwrap_or(0);
    (n <= cap).then_some(n)
}

/// `input` LZW-decoded as PDF does (MSB first, 8-bit symbols), `None` past `cap` bytes.
fn lzw(input: &[u8], cap: u64, early_change: bool) -> Option<Vec<u8>> {
    use weezl::{BitOrder, decode::Decoder};
    let mut decoder = if early_change {
        Decoder::with_tiff_size_switch(BitOrder::Msb, 8)
    } else {
        Decoder::new(BitOrder::Msb, 8)
    };
    let mut out = Capped {
        data: Vec::new(),
        cap,
    };
    // A write past the cap fails the decode; a corrupt tail ends the data, like lopdf.
    let _ = decoder.into_stream(&mut out).decode_all(input);
    (out.data.len() as u64 <= cap).then_some(out.data)
}

/// A buffer that refuses to grow past `cap` bytes (it keeps one byte more to tell).
struct Capped {
    data: Vec<u8>,
    cap: u64,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = (self.cap + 1).saturating_sub(self.data.len() as u64) as usize;
        if room == 0 {
            return Err(std::io::Error::other("decoded stream past its limit"));
        }
        let n = buf.len().min(room);
        self.data.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The raw data of the cross-reference streams of `pdf`: after each `/XRef` name (not
/// `/XRefStm`), the bytes following the next `stream` keyword and its end of line.
fn xref_stream_data(pdf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut from = 0;
    std::iter::from_fn(move || {
        loop {
            let at = from + find(&pdf[from..], b"/XRef")?;
            from = at + 5;
            if pdf.get(from).is_some_and(|c| c.is_ascii_alphanumeric()) {
                continue; // /XRefStm
            }
            let window = &pdf[from..pdf.len().min(from + XREF_DICT_WINDOW)];
            let Some(s) = find(window, b"stream") else {
                continue;
            };
            let mut start = from + s + 6;
            if pdf.get(start) == Some(&b'\r') {
                start += 1;
            }
            if pdf.get(start) == Some(&b'\n') {
                start += 1;
            }
            return Some(&pdf[start.min(pdf.len())..]);
        }
    })
}

/// Where `needle` first occurs in `hay`.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decoded_sizes_are_capped_per_filter() {
        let zeros = vec![0u8; 10_000];
        let flate = Stream::new(
            lopdf::dictionary! { "Filter" => "FlateDecode" },
            zlib(&zeros),
        );
        assert_eq!(decoded_len(&flate, 10_000), Some(10_000));
        assert_eq!(decoded_len(&flate, 9_999), None);
        let plain = Stream::new(lopdf::dictionary! {}, b"BT ET".to_vec());
        assert_eq!(decoded_len(&plain, 5), Some(5));
        let mut lzw_data = Vec::new();
        weezl::encode::Encoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8)
            .into_stream(&mut lzw_data)
            .encode_all(&zeros[..])
            .status
            .unwrap();
        let lzw = Stream::new(lopdf::dictionary! { "Filter" => "LZWDecode" }, lzw_data);
        assert_eq!(decoded_len(&lzw, 10_000), Some(10_000));
        assert_eq!(decoded_len(&lzw, 100), None);
        let chained = Stream::new(
            lopdf::dictionary! { "Filter" => vec!["ASCII85Decode".into(), "FlateDecode".into()] },
            b"z~>".to_vec(),
        );
        // Four zero bytes are not a zlib stream: nothing inflates, within any cap.
        assert_eq!(decoded_len(&chained, 1), Some(0));
    }

    /// A one-page PDF whose content stream (FlateDecode) decodes to `text` padded with spaces
    /// to `size` bytes, `streams` times over (one page each).
    fn pdf(size: usize, streams: usize) -> Vec<u8> {
        use lopdf::{Document, dictionary};
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font_id = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Courier",
        });
        let mut content = b"BT /F1 12 Tf 72 700 Td (bounded text) Tj ET".to_vec();
        content.resize(size, b' ');
        let mut kids = Vec::new();
        for _ in 0..streams {
            let content_id = doc.add_object(Stream::new(
                dictionary! { "Filter" => "FlateDecode" },
                zlib(&content),
            ));
            kids.push(
                doc.add_object(dictionary! {
                    "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
                })
                .into(),
            );
        }
        let count = kids.len() as i64;
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! {
                "Type" => "Pages", "Kids" => kids, "Count" => count,
                "Resources" => dictionary! { "Font" => dictionary! { "F1" => font_id } },
                "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            }),
        );
        let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
        doc.trailer.set("Root", catalog_id);
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        out
    }

    #[test]
    fn a_pdf_past_its_limits_is_refused_before_lopdf_inflates_it() {
        use crate::extract::{ExtractError, pdf as extract_pdf};
        let two_pages = pdf(2_000, 2);
        let limits = |stream_bytes, document_bytes| PdfLimits {
            stream_bytes,
            document_bytes,
        };
        // Two 2000-byte content streams and lopdf's own small ones.
        let pages = extract_pdf(&two_pages, limits(2_000, 5_000)).expect("within limits");
        assert_eq!(pages.len(), 2);
        assert_eq!(
            extract_pdf(&two_pages, limits(1_999, 1_000_000)),
            Err(ExtractError::TooLarge { limit_bytes: 1_999 })
        );
        assert_eq!(
            extract_pdf(&two_pages, limits(2_000, 3_999)),
            Err(ExtractError::TooLarge { limit_bytes: 3_999 })
        );
        // The thread's budget does not leak into the next load.
        assert!(extract_pdf(&two_pages, limits(2_000, 5_000)).is_ok());
    }

    #[test]
    fn cross_reference_stream_data_is_found() {
        let pdf = b"1 0 obj << /Type /XRef /XRefStm 5 /Filter /FlateDecode >>\r\nstream\r\nDATA";
        let found: Vec<&[u8]> = xref_stream_data(pdf).collect();
        assert_eq!(found, [&b"DATA"[..]]);
        assert_eq!(xref_stream_data(b"/XRefStm 12").count(), 0);
    }
}
