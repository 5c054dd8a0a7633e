//! Call recording through its public API, the way the call runtime uses it: frames pushed on
//! the call task, blocks written by the writer task as they come, files finalised and stored
//! at the end, rows stored with the store.

use serde_json::json;
use switchboard_assistant::{RecordingFormat, RecordingSettings};
use switchboard_core::audio::{MULAW_SILENCE, mulaw};
use switchboard_server::call::recording::{
    CallRecorder, RecordingPlan, SpoolWriter, TrackKind, WRITER_QUEUE_BLOCKS, run_writer,
};
use switchboard_server::recording_storage::RecordingStorage;
use switchboard_store::{CallStatus, NewCall, Store};

/// A 10 s call: the bot speaks 2 s (sent 300 ms ahead of playback), the caller barges in after
/// 1 s and the rest of the reply is cleared; the files hold what was heard and the rows match.
#[tokio::test]
async fn a_call_is_recorded_written_and_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = RecordingSettings {
        format: Some(RecordingFormat::Wav),
        ..RecordingSettings::default()
    };
    let plan = RecordingPlan::new(&settings, 1, 1)
        .expect("safe dir")
        .expect("recording enabled by default")
        .with_max_call_length_s(Some(600));
    assert!(plan.creates_database_records());
    // Room for the whole call: nothing depends on how the two tasks are scheduled here.
    let (mut rec, blocks) = CallRecorder::new(&plan, 4 * WRITER_QUEUE_BLOCKS);
    let writer = tokio::spawn(run_writer(
        SpoolWriter::new(plan, dir.path()),
        blocks,
        RecordingStorage::local(dir.path()),
    ));
    let bot = [mulaw::encode(6000); 160];
    let caller = [mulaw::encode(-300); 160];
    let mut sent = 0;
    for frame in 0..500 {
        // Keep a 300 ms lead (15 frames) of bot audio queued, 100 frames in all.
        while sent < 100 && sent < frame + 15 {
            rec.push_bot(&bot);
            sent += 1;
        }
        if frame == 50 {
            rec.bot_cleared();
            sent = 100;
        }
        rec.push_caller(&caller);
    }
    assert_eq!(rec.dropped_blocks(), 0);
    rec.finish();
    let stored = writer.await.expect("join").expect("files written");
    let files: Vec<_> = stored.iter().map(|s| s.file.clone()).collect();
    let kinds: Vec<TrackKind> = files.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [TrackKind::User, TrackKind::Assistant, TrackKind::Mixed]
    );
    for f in &files {
        assert_eq!(f.duration_ms, 10_000, "{:?}", f.kind);
        assert!(
            f.path
                .starts_with(dir.path().join("org-1").join("recordings"))
        );
    }
    let assistant = std::fs::read(&files[1].path).expect("assistant file");
    // µ-law WAV: 58-byte header, then one byte per sample.
    let audio = &assistant[58..];
    assert_eq!(audio.len(), 80_000);
    // Played: the first 50 frames (1 s); after the clear only silence.
    assert!(audio[..8000].iter().all(|&b| b == bot[0]));
    assert!(audio[8000..].iter().all(|&b| b == MULAW_SILENCE));

    let store = Store::connect("sqlite::memory:").await.expect("store");
    store.migrate().await.expect("migrate");
    let org = store.ensure_organization("rec").await.expect("org").id;
    let call = store
        .create_call(&NewCall {
            organization_id: org,
            assistant_id: None,
            call_sid: "CA0123456789abcdef".into(),
            direction: "inbound".into(),
            from_number: "+15550001".into(),
            to_number: "+15550002".into(),
            status: CallStatus::InProgress,
            metadata: json!({}),
            stream_deadline_at_ms: None,
        })
        .await
        .expect("call");
    for s in &stored {
        // Local storage: the location is the file's path.
        assert_eq!(s.location, s.file.path.to_string_lossy());
        store
            .add_recording(call.id, &s.file.to_new_recording(&s.location))
            .await
            .expect("row");
    }
    let rows = store.list_recordings(call.id).await.expect("rows");
    assert_eq!(rows.len(), 3);
    for (row, f) in rows.iter().zip(&files) {
        assert_eq!(row.kind, f.kind.as_str());
        assert_eq!(row.format, "wav");
        assert_eq!(row.duration_ms, 10_000);
        assert_eq!(row.sample_rate, 8000);
        assert_eq!(row.size_bytes, 80_058);
        assert_eq!(row.path_or_url, f.path.to_string_lossy());
    }
}
