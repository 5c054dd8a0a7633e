#!/usr/bin/env bash
# Regenerates the recorded calls in fixtures/calls/: caller-side audio as raw 8 kHz mu-law
# (<name>.ulaw) and a JSON script per call (<name>.json) that the fake caller and the tests read:
#
#   {"name": "...", "description": "...",
#    "utterances": [{"text": "...", "start_ms": N, "end_ms": N,
#                    "kind": "turn"|"barge_in"|"backchannel"|"pause"|"noise"}],
#    "hangup_at_ms": N}
#
# Speech is synthesised with espeak-ng (several voices, variants and rates), resampled to 8 kHz,
# trimmed of its leading/trailing silence, and laid out on a timeline with silence between
# utterances. Every time in the JSON comes from the generated audio itself (sample counts read
# with `soxi -s`, 8 samples = 1 ms), so the script and the audio always agree. Some calls get
# telephone-band filtering (300-3400 Hz), some background noise, one is quiet.
#
# The generated files are committed: tests never need espeak-ng or sox. Re-run after changing
# this script:   scripts/make-fixtures.sh
# Needs espeak-ng and sox (Debian: apt-get install espeak-ng sox; installed if missing and root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/fixtures/calls"
RATE=8000

TOOL=make-fixtures
# shellcheck source=scripts/make-fixtures-lib.sh
source "$ROOT/scripts/make-fixtures-lib.sh"

# ---- the calls ------------------------------------------------------------------------------
# Timing convention: the welcome message plays for the first ~2.5 s; the bot is expected to start
# answering about 1 s after each caller turn ends and to speak for a few seconds.

call_begin booking_3_turns telephone 0 0 \
  "A normal three-turn call booking an appointment: American male voice at a normal rate, telephone band, clean line. The caller waits for each answer."
silence 3.0
say turn en-us 160 "Hi, I'd like to book an appointment for next Tuesday, please."
silence 5.0
say turn en-us 160 "Around three in the afternoon would be great."
silence 5.0
say turn en-us 160 "Yes, that's perfect, my name is Maria Lopez. Thank you, goodbye."
call_end 2.0

call_begin barge_in telephone 0 0 \
  "A real barge-in: after a question the caller starts a long sentence 1.5 s after their previous utterance ended, while the bot is answering. British male voice (+m3)."
silence 3.0
say turn en-gb+m3 170 "Can you tell me your opening hours?"
silence 1.5
say barge_in en-gb+m3 170 "Sorry, actually I only need to know whether you are open on Sunday mornings, because that is the only day I can come in."
silence 5.0
say turn en-gb+m3 170 "Great, thanks a lot. Bye."
call_end 2.0

call_begin backchannel telephone 0 0 \
  "Backchannels during a long bot answer: 'uh-huh' about 2.5 s and 'yeah' about 5 s after the question, neither should interrupt the bot or start a turn. American female voice (+f2)."
silence 3.0
say turn en-us+f2 165 "What do I need to bring to my first appointment?"
silence 2.5
say backchannel en-us+f2 150 "uh-huh"
silence 2.0
say backchannel en-us+f2 150 "yeah"
silence 5.0
say turn en-us+f2 165 "Okay, got it. Thanks, goodbye."
call_end 2.0

call_begin pause_mid_sentence telephone 0 0 \
  "A pause mid-sentence: 'I want to...' then 1.2 s of silence, then 'book a table for two at seven tonight.' The first part (kind pause) and its continuation are one user turn; the bot must not answer in the gap. American male voice (+m1), slow."
silence 3.0
say pause en-us+m1 145 "I want to..."
silence 1.2
say turn en-us+m1 145 "book a table for two at seven tonight."
silence 5.0
say turn en-us+m1 145 "Under the name Parker, please. Thank you, bye."
call_end 2.0

call_begin tail_speech telephone 0 0 \
  "Speech at the tail of an answer: a short question, then the caller speaks again 3.3 s later, when a short answer (about 2.5 s, starting about 1 s after the question) is nearly over. Tail protection should let the bot finish and take it as the next turn. British voice."
silence 3.0
say turn en-gb 165 "How long does it take to drive from the airport?"
silence 3.3
say turn en-gb 165 "And is there parking?"
silence 5.0
say turn en-gb 165 "Perfect, thanks."
call_end 2.0

call_begin cough_noise telephone 0 0 \
  "Noise bursts: a cough-like burst of band-limited noise (300 ms) 2 s into the bot's answer, and a second one (250 ms) just after a turn. Neither is speech: no barge-in, no turn. American male voice (+m3)."
silence 3.0
say turn en-us+m3 170 "Do you have any appointments left this week?"
silence 2.0
noise_burst noise 0.30 300 2500 "[cough]"
silence 4.0
say turn en-us+m3 170 "Friday morning works for me."
silence 0.6
noise_burst noise 0.25 400 3000 "[cough]"
silence 4.0
say turn en-us+m3 170 "Thanks, goodbye."
call_end 2.0

call_begin welcome_interrupt telephone 0 0 \
  "The caller talks over the welcome message, starting 800 ms into the call, then has a normal exchange. American female voice (+f3)."
silence 0.8
say barge_in en-us+f3 175 "Hi, yes, I'm calling about my order from last week."
silence 5.0
say turn en-us+f3 175 "The order number is four five seven two."
silence 5.0
say turn en-us+f3 175 "Thank you."
call_end 2.0

call_begin fast_talker telephone 0 0 \
  "A fast talker (260 words per minute) with short gaps. American male voice (+m2)."
silence 2.5
say turn en-us+m2 260 "Hey, I need to change my reservation from Friday to Saturday, same time, same number of people."
silence 4.0
say turn en-us+m2 260 "Yeah, seven thirty, party of four, the name is Chen."
silence 3.5
say turn en-us+m2 260 "Great, thanks, bye."
call_end 1.5

call_begin noisy_quiet_line telephone 0.012 -14 \
  "A quiet caller (speech 14 dB down, peaks around -20 dBFS) on a noisy line: steady pink noise through the whole call, telephone band. British female voice (+f2), slow."
silence 3.0
say turn en-gb+f2 150 "Hello? Can you hear me? I'd like to check my balance."
silence 5.0
say turn en-gb+f2 150 "It's the savings account."
silence 5.0
say turn en-gb+f2 150 "Okay, thanks."
call_end 2.0

call_begin hesitant_caller wide 0 0 \
  "A hesitant caller: 'So I was wondering if, um...' then 1.5 s of silence before finishing the sentence (an incomplete utterance that should wait longer). Received-pronunciation voice, slow, wide band (no telephone filter)."
silence 3.0
say pause en-gb-x-rp 130 "So I was wondering if, um..."
silence 1.5
say turn en-gb-x-rp 130 "if you deliver to Brighton."
silence 5.0
say turn en-gb-x-rp 130 "Lovely, thank you."
call_end 2.0

du -ch "$OUT"/*.ulaw | tail -1
