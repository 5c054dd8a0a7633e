//! `switchboard demo` as a user runs it: the binary starts the server and the provider fakes,
//! creates the demo assistant, replays the built-in call, and prints the conversation, each
//! turn's latency and the call's API URLs.

use std::process::Command;

#[test]
fn demo_runs_a_whole_call() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["demo", "--instant"])
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // The welcome, the caller's words as the engine transcribed them, the scripted answers.
    for line in [
        "bot     Hello, thanks for calling Harbor Dental.",
        "caller  Hi, I'd like to book an appointment for next Tuesday, please.",
        "bot     Of course. On Tuesday I have ten in the morning or three in the afternoon.",
        "caller  Around three in the afternoon would be great.",
        "You're booked for Tuesday at 3 p.m.",
        "Latency per turn",
        "completed (caller_hangup)",
        "/api/v1/calls/1/transcripts",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    assert!(stdout.contains(", 0 errors."), "{stdout}");
}
