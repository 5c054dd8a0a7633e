//! The per-frame hot path allocates nothing in steady state: parsing an inbound `media` frame,
//! decoding its payload into a reused buffer, and rendering outbound `media` / `mark` messages
//! with a reused writer. Checked with a counting allocator that only counts on this test's
//! thread while the loop runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use switchboard_telephony::media::{
    InboundMessage, InboundParser, OutboundWriter, decode_payload_into,
};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn media_frames_allocate_nothing_in_steady_state() {
    let frames: Vec<String> = (0..50u32)
        .map(|i| {
            let payload = format!("{}fw==", "/v7+".repeat(53)); // 216 base64 chars = 160 bytes
            format!(
                r#"{{"event":"media","sequenceNumber":"{}","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":"{payload}"}},"streamSid":"MZ0123456789abcdef0123456789abcdef"}}"#,
                i + 2,
                i + 1,
                i * 20
            )
        })
        .collect();
    let parser = InboundParser::default();
    let mut buf = Vec::with_capacity(160);
    let mut writer = OutboundWriter::with_frame_capacity(160);
    let bot_frame = [0x55u8; 160];
    // Warm-up outside the counted region (grows the writer's buffer to its working size).
    let _ = writer.mark("MZ0123456789abcdef0123456789abcdef", "gen-1-chunk-1");
    let _ = writer.media("MZ0123456789abcdef0123456789abcdef", &bot_frame);

    // base64's decoder reserves its length estimate (162 bytes for 160), so one warm-up decode.
    if let Ok(InboundMessage::Media(m)) = parser.parse(&frames[0]) {
        let _ = decode_payload_into(&m.payload, &mut buf);
    }
    let mut total_bytes = 0usize;
    let mut total_len = 0usize;
    COUNTING.with(|c| c.set(true));
    for _ in 0..20 {
        for f in &frames {
            if let Ok(InboundMessage::Media(m)) = parser.parse(f) {
                total_bytes += decode_payload_into(&m.payload, &mut buf).unwrap_or(0);
            }
            total_len += writer
                .media("MZ0123456789abcdef0123456789abcdef", &bot_frame)
                .len();
            total_len += writer
                .mark("MZ0123456789abcdef0123456789abcdef", "gen-1-chunk-2")
                .len();
        }
    }
    COUNTING.with(|c| c.set(false));
    assert_eq!(total_bytes, 20 * 50 * 160);
    assert!(total_len > 0);
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), 0, "hot path allocated");
}
