//! Background sound (`tts_settings.background_sound`): a bed of 8 kHz PCM mixed at a fixed
//! volume under every outbound frame of a call, looped or played once.
//!
//! The sound is decoded and resampled once ([`resample_to_8k`]) and shared by every call that
//! plays it (`Arc<[i16]>`); each call keeps only a [`BackgroundBed`]: the shared samples, its own
//! position and its volume. Mixing a frame decodes the µ-law speech through the lookup table,
//! adds the scaled bed sample with saturation and re-encodes: no allocation, no floating point.

use std::sync::Arc;

use super::resample::Resampler;
use super::{AudioError, FRAME_BYTES, SAMPLE_RATE_HZ, mulaw};

/// Fixed-point scale of [`BackgroundBed`]'s volume: 1.0 is `1 << VOLUME_SHIFT` (Q15).
const VOLUME_SHIFT: u32 = 15;

/// One call's playback of a shared background sound.
///
/// Every frame sent to the caller goes through [`BackgroundBed::mix_into`], speech and
/// silence alike, so the bed's position follows the caller's playout clock one sample per
/// sample sent. When the caller's queue is dropped (barge-in `clear`),
/// [`BackgroundBed::rewind`] moves it back by what was never played, so the bed does not jump.
#[derive(Debug, Clone)]
pub struct BackgroundBed {
    samples: Arc<[i16]>,
    /// Index of the next sample to play.
    pos: usize,
    looping: bool,
    /// Volume in Q15 (32768 = unchanged level).
    volume_q15: i32,
}

impl BackgroundBed {
    /// A bed over `samples` (8 kHz mono PCM) at `volume` (0 to 1; clamped), from its start.
    /// `looping`: start again at the end for as long as the call lasts; otherwise play once.
    pub fn new(samples: Arc<[i16]>, volume: f64, looping: bool) -> Self {
        let volume_q15 = (volume.clamp(0.0, 1.0) * f64::from(1u32 << VOLUME_SHIFT)).round() as i32;
        Self {
            samples,
            pos: 0,
            looping,
            volume_q15,
        }
    }

    /// Length of the sound in samples (8 per ms).
    pub fn len_samples(&self) -> usize {
        self.samples.len()
    }

    /// Index of the next sample to play (wraps to 0 when looping).
    pub fn position_samples(&self) -> usize {
        self.pos
    }

    /// The sound has nothing more to play (played once to its end, or empty): mixing is then
    /// a no-op and a caller with nothing else to send may stop sending.
    pub fn is_finished(&self) -> bool {
        self.samples.is_empty() || (!self.looping && self.pos >= self.samples.len())
    }

    /// Adds the next 160 samples of the bed, at the bed's volume, to the µ-law `frame` in
    /// place (saturating), and advances. Past the end of a sound played once, the frame is
    /// left as it is.
    #[inline]
    pub fn mix_into(&mut self, frame: &mut [u8; FRAME_BYTES]) {
        let len = self.samples.len();
        if self.is_finished() {
            return;
        }
        for out in frame.iter_mut() {
            if self.pos >= len {
                if !self.looping {
                    return;
                }
                self.pos = 0;
            }
            let bed = (i32::from(self.samples[self.pos]) * self.volume_q15) >> VOLUME_SHIFT;
            self.pos += 1;
            let sum = i32::from(mulaw::decode(*out)) + bed;
            *out = mulaw::encode(sum.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16);
        }
    }

    /// Moves the position back by `samples` (audio that was mixed and sent but dropped before
    /// it played), wrapping when looping; a sound played once stops at its start.
    pub fn rewind(&mut self, samples: usize) {
        let len = self.samples.len();
        if len == 0 {
            return;
        }
        if self.looping {
            let pos = self.pos % len;
            self.pos = (pos + len - samples % len) % len;
        } else {
            self.pos = self.pos.min(len).saturating_sub(samples);
        }
    }
}

/// Converts a whole mono sound at `from_hz` to 8 kHz, once, for a [`BackgroundBed`]: the
/// filter's start-up delay is removed so the result starts with the sound and lasts as long
/// (`len * 8000 / from_hz` samples, rounded).
pub fn resample_to_8k(samples: &[i16], from_hz: u32) -> Result<Vec<i16>, AudioError> {
    let mut r = Resampler::new(from_hz, SAMPLE_RATE_HZ)?;
    let expected = ((samples.len() as u64 * u64::from(SAMPLE_RATE_HZ) + u64::from(from_hz) / 2)
        / u64::from(from_hz)) as usize;
    let delay = r.delay_samples();
    let mut out = Vec::with_capacity(expected + delay + 2 * FRAME_BYTES);
    r.process(samples, &mut out);
    // Push the filter's delay worth of silence through so the tail comes out too.
    let tail =
        vec![0i16; (delay as u64 * u64::from(from_hz) / u64::from(SAMPLE_RATE_HZ)) as usize + 1];
    r.process(&tail, &mut out);
    r.flush(&mut out);
    let start = delay.min(out.len());
    out.drain(..start);
    out.truncate(expected);
    out.resize(expected, 0);
    Ok(out)
}

/// Joins a sound's end to its start for looping, once at load time: the last `fade_samples`
/// (at most half the sound) are crossfaded linearly into the first ones and dropped, so a bed
/// looping over the result goes from its last sample to its first as smoothly as the sound
/// flows anywhere else (no click at the seam). The sound gets `fade_samples` shorter.
pub fn smooth_loop_seam(samples: &mut Vec<i16>, fade_samples: usize) {
    let len = samples.len();
    let n = fade_samples.min(len / 2);
    if n == 0 {
        return;
    }
    let tail = len - n;
    for i in 0..n {
        // Weight of the start rises from 1/(n+1) to n/(n+1): neither side jumps.
        let w = (i + 1) as f32 / (n + 1) as f32;
        let mixed = f32::from(samples[i]) * w + f32::from(samples[tail + i]) * (1.0 - w);
        samples[i] = mixed
            .round()
            .clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16;
    }
    samples.truncate(tail);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::MULAW_SILENCE;

    fn bed(samples: Vec<i16>, volume: f64, looping: bool) -> BackgroundBed {
        BackgroundBed::new(samples.into(), volume, looping)
    }

    fn decoded(frame: &[u8; FRAME_BYTES]) -> Vec<i32> {
        frame.iter().map(|&b| i32::from(mulaw::decode(b))).collect()
    }

    #[test]
    fn silence_takes_the_bed_at_its_volume() {
        let mut b = bed(vec![10000; 400], 0.3, true);
        let mut frame = [MULAW_SILENCE; FRAME_BYTES];
        b.mix_into(&mut frame);
        for s in decoded(&frame) {
            // 3000 through µ-law: within its quantisation step (~2 % at this level).
            assert!((2900..=3100).contains(&s), "{s}");
        }
        assert_eq!(b.position_samples(), 160);
    }

    #[test]
    fn speech_is_kept_and_the_bed_added_under_it() {
        let mut b = bed(vec![-2000; 160], 0.5, true);
        let mut frame = [mulaw::encode(8000); FRAME_BYTES];
        b.mix_into(&mut frame);
        for s in decoded(&frame) {
            assert!((6800..=7200).contains(&s), "{s}");
        }
        // Saturates rather than wrapping.
        let mut loud = bed(vec![i16::MAX; 160], 1.0, true);
        let mut frame = [mulaw::encode(30000); FRAME_BYTES];
        loud.mix_into(&mut frame);
        assert!(decoded(&frame).iter().all(|&s| s > 30000));
    }

    #[test]
    fn loops_past_the_end_of_the_sound() {
        // 100 samples: a frame of 160 wraps once, the second frame wraps again.
        let ramp: Vec<i16> = (0..100).map(|i| i * 100).collect();
        let mut b = bed(ramp.clone(), 1.0, true);
        let mut f1 = [MULAW_SILENCE; FRAME_BYTES];
        let mut f2 = [MULAW_SILENCE; FRAME_BYTES];
        b.mix_into(&mut f1);
        b.mix_into(&mut f2);
        assert_eq!(b.position_samples(), 20);
        let all: Vec<i32> = decoded(&f1).into_iter().chain(decoded(&f2)).collect();
        for (i, s) in all.iter().enumerate() {
            let want = i32::from(ramp[i % 100]);
            assert!(
                (s - want).abs() <= want / 30 + 8,
                "sample {i}: {s} vs {want}"
            );
        }
        assert!(!b.is_finished());
    }

    #[test]
    fn played_once_it_stops_at_its_end() {
        let mut b = bed(vec![5000; 200], 1.0, false);
        let mut f1 = [MULAW_SILENCE; FRAME_BYTES];
        let mut f2 = [MULAW_SILENCE; FRAME_BYTES];
        b.mix_into(&mut f1);
        b.mix_into(&mut f2);
        assert!(b.is_finished());
        let second = decoded(&f2);
        assert!(second[..40].iter().all(|&s| s > 4800));
        assert!(second[40..].iter().all(|&s| s == 0));
        let mut f3 = [mulaw::encode(1000); FRAME_BYTES];
        let before = f3;
        b.mix_into(&mut f3);
        assert_eq!(f3, before);
    }

    #[test]
    fn rewind_replays_what_was_dropped() {
        let mut b = bed((0..300).collect(), 1.0, true);
        let mut f = [MULAW_SILENCE; FRAME_BYTES];
        b.mix_into(&mut f);
        b.rewind(100);
        assert_eq!(b.position_samples(), 60);
        b.rewind(100);
        assert_eq!(b.position_samples(), 260);
        let mut once = bed((0..300).collect(), 1.0, false);
        once.mix_into(&mut f);
        once.rewind(1000);
        assert_eq!(once.position_samples(), 0);
    }

    #[test]
    fn volume_zero_leaves_frames_untouched() {
        let mut b = bed(vec![20000; 160], 0.0, true);
        let mut frame = [mulaw::encode(1234); FRAME_BYTES];
        let before = frame;
        b.mix_into(&mut frame);
        assert_eq!(frame, before);
    }

    #[test]
    fn resampling_keeps_length_and_level() {
        for from in [8000u32, 11025, 16000, 22050, 44100, 48000] {
            // 1.5 s of a 440 Hz tone at amplitude 8000.
            let n = from as usize * 3 / 2;
            let tone: Vec<i16> = (0..n)
                .map(|i| {
                    (8000.0
                        * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / f64::from(from)).sin())
                        as i16
                })
                .collect();
            let out = resample_to_8k(&tone, from).expect("supported rate");
            assert_eq!(out.len(), 12000, "{from} Hz");
            let mid = &out[800..11200];
            let peak = mid.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
            assert!((7600..=8400).contains(&peak), "{from} Hz: peak {peak}");
            // The tone starts at the start: no filter delay left in front.
            let first_loud = out
                .iter()
                .position(|s| s.unsigned_abs() > 2000)
                .unwrap_or(999);
            assert!(first_loud < 20, "{from} Hz: first loud sample {first_loud}");
        }
        assert!(resample_to_8k(&[1, 2, 3], 0).is_err());
    }

    /// Largest step between neighbouring samples of `s` played twice in a row (seam included).
    fn max_step_looped(s: &[i16]) -> i32 {
        s.iter()
            .chain(s.iter())
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| (i32::from(*w[1]) - i32::from(*w[0])).abs())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn the_loop_seam_is_crossfaded_so_it_does_not_click() {
        // 2405 samples of 440 Hz at 10 000: it starts at 0 and ends near a peak.
        let tone: Vec<i16> = (0..2405)
            .map(|i| {
                (10000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 8000.0).sin()) as i16
            })
            .collect();
        let natural = tone
            .windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap_or(0);
        let raw_seam = (i32::from(tone[0]) - i32::from(tone[2404])).abs();
        assert!(
            raw_seam > 2 * natural,
            "the test needs a seam that clicks: {raw_seam}"
        );
        let mut smoothed = tone.clone();
        smooth_loop_seam(&mut smoothed, 120);
        assert_eq!(smoothed.len(), 2285, "15 ms shorter");
        assert_eq!(smoothed[120..], tone[120..2285], "only the fade changes");
        let step = max_step_looped(&smoothed);
        assert!(
            step <= natural * 11 / 10,
            "step {step} vs the tone's own {natural}"
        );

        // A step from +8000 to -8000 at the seam: spread over the fade.
        // A ramp from +8000 down to -7990: steps of 10, and 15 990 at the seam.
        let mut halves: Vec<i16> = (0..1600).map(|i| 8000 - 10 * i as i16).collect();
        assert_eq!(max_step_looped(&halves), 15990);
        smooth_loop_seam(&mut halves, 120);
        assert!(
            max_step_looped(&halves) <= 16000 / 121 + 11,
            "{}",
            max_step_looped(&halves)
        );

        // Played through a bed, µ-law and all, the seam stays within the quantisation step.
        let mut b = BackgroundBed::new(halves.clone().into(), 1.0, true);
        let mut heard = Vec::new();
        for _ in 0..20 {
            let mut f = [MULAW_SILENCE; FRAME_BYTES];
            b.mix_into(&mut f);
            heard.extend(decoded(&f));
        }
        let worst = heard
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .max()
            .unwrap_or(0);
        assert!(worst <= 16000 / 121 + 600, "{worst}");

        // Too short to fade, or empty: left alone.
        let mut one = vec![5i16];
        smooth_loop_seam(&mut one, 120);
        assert_eq!(one, [5]);
        let mut none: Vec<i16> = Vec::new();
        smooth_loop_seam(&mut none, 120);
        assert!(none.is_empty());
    }
}
