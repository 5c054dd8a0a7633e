//! Tells the fake TTS voice from the background sound in the bot audio the caller hears, per
//! 20 ms frame, so `--background-sound` runs measure turn latency, interruption reaction and
//! backchannel gaps as runs without it do (a bed mixed under every frame otherwise keeps the
//! caller's playback from ever going silent).
//!
//! The marker is the fake voice itself: every fake TTS speaks the testkit's synthetic voice
//! (`switchboard_testkit::deepgram::mulaw::voice_like`: 180 Hz and 720 Hz tones under a 4 Hz
//! syllable envelope that never falls below 10 %), so its 720 Hz partial is present at an
//! amplitude of at least 360 in every frame of speech, pauses between syllables included. The
//! bed `--background-sound` uploads ([`crate::cli::background_wav`]: 100 Hz hum, 440 Hz tone,
//! noise, at volume 0.3) has next to nothing there. A Hann-windowed Goertzel filter at 720 Hz
//! over each 160-sample frame measures it.

use std::sync::LazyLock;

use switchboard_core::audio::{FRAME_BYTES, mulaw};

/// Frequency of the fake voice's marker partial, Hz.
pub const MARKER_HZ: f64 = 720.0;

/// Amplitude at [`MARKER_HZ`] (linear 16-bit units) from which a frame is speech: the voice has
/// at least 300 there (with the bed under it), the bed alone under 100 at volume 0.3 and under
/// 200 even at full volume (its noise).
pub const SPEECH_THRESHOLD: f64 = 200.0;

/// Hann window of one frame, scaled so a full-scale sine's amplitude reads as itself.
static WINDOW: LazyLock<[f32; FRAME_BYTES]> = LazyLock::new(|| {
    let n = FRAME_BYTES as f64;
    let mut w = [0f32; FRAME_BYTES];
    for (i, x) in w.iter_mut().enumerate() {
        // Coherent gain of Hann is 1/2: ×2 undoes it.
        *x = (1.0 - (2.0 * std::f64::consts::PI * i as f64 / n).cos()) as f32;
    }
    w
});

/// Amplitude of [`MARKER_HZ`] in one frame of µ-law (at most [`FRAME_BYTES`] samples).
pub fn marker_amplitude(ulaw: &[u8]) -> f64 {
    let w = 2.0 * std::f64::consts::PI * MARKER_HZ / 8000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for (&b, &win) in ulaw.iter().zip(WINDOW.iter()) {
        let s = f64::from(mulaw::decode(b)) * f64::from(win) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / FRAME_BYTES as f64
}

/// Whether a chunk of bot audio (µ-law) carries the fake voice: any of its 20 ms frames does
/// (a partial last frame counts when it is at least 10 ms).
pub fn is_fake_speech(ulaw: &[u8]) -> bool {
    ulaw.chunks(FRAME_BYTES)
        .filter(|f| f.len() >= FRAME_BYTES / 2)
        .any(|f| marker_amplitude(f) * FRAME_BYTES as f64 / f.len() as f64 >= SPEECH_THRESHOLD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::audio::MULAW_SILENCE;
    use switchboard_core::audio::background::{BackgroundBed, resample_to_8k};
    use switchboard_testkit::deepgram::mulaw::voice_like;

    /// The bed `--background-sound` uploads, as the engine plays it: 16 kHz → 8 kHz.
    fn bed_8k() -> Vec<i16> {
        let wav = crate::cli::background_wav(4.0, 16000);
        let pcm: Vec<i16> = wav[44..]
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        resample_to_8k(&pcm, 16000).expect("16 kHz resamples")
    }

    /// `frames` frames of `speech` (or silence) with the bed mixed under at `volume`, as the
    /// engine sends them.
    fn mixed(speech: bool, volume: f64, frames: usize) -> Vec<[u8; FRAME_BYTES]> {
        let mut bed = BackgroundBed::new(bed_8k().into(), volume, true);
        (0..frames)
            .map(|k| {
                let mut f = [MULAW_SILENCE; FRAME_BYTES];
                if speech {
                    f.copy_from_slice(&voice_like((k * FRAME_BYTES) as u64, FRAME_BYTES));
                }
                bed.mix_into(&mut f);
                f
            })
            .collect()
    }

    #[test]
    fn every_frame_of_the_voice_is_speech_with_or_without_the_bed() {
        // 4 s: every phase of the syllable envelope (250 ms) and of the bed, 16 times over.
        for volume in [0.0, 0.3, 0.6] {
            for (k, f) in mixed(true, volume, 200).iter().enumerate() {
                let a = marker_amplitude(f);
                assert!(a >= 300.0, "volume {volume}, frame {k}: {a:.0}");
                assert!(is_fake_speech(f));
            }
        }
    }

    #[test]
    fn the_bed_alone_and_silence_are_not_speech() {
        for (volume, limit) in [(0.3, SPEECH_THRESHOLD / 2.0), (1.0, SPEECH_THRESHOLD)] {
            let worst = mixed(false, volume, 200)
                .iter()
                .map(|f| marker_amplitude(&f[..]))
                .fold(0.0, f64::max);
            assert!(worst < limit, "volume {volume}: {worst:.0}");
        }
        assert!(!is_fake_speech(&[MULAW_SILENCE; FRAME_BYTES]));
        assert!(!is_fake_speech(&[]));
    }

    #[test]
    fn a_chunk_is_speech_when_any_of_its_frames_is() {
        let bed = mixed(false, 0.3, 3);
        let voice = mixed(true, 0.3, 1);
        let chunk: Vec<u8> = [bed[0], bed[1], voice[0], bed[2]].concat();
        assert!(is_fake_speech(&chunk));
        let chunk: Vec<u8> = [bed[0], bed[1]].concat();
        assert!(!is_fake_speech(&chunk));
        // A short tail of speech counts once it is half a frame.
        assert!(is_fake_speech(&voice[0][..80]));
        assert!(!is_fake_speech(&voice[0][..40]));
    }
}
