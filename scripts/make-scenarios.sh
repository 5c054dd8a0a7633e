#!/usr/bin/env bash
# Regenerates the turn-taking corpus in fixtures/scenarios/ (issue 12): recorded calls like
# fixtures/calls/ (see scripts/make-fixtures.sh and fixtures/README.md for the audio and the
# script format) whose JSON also holds the assistant's "language" and an "expect" block, which
# `switchboard-loadgen scenarios` and crates/loadgen/tests/scenarios.rs judge from what the fake
# caller heard (the checks are documented in crates/loadgen/src/scenarios.rs):
#
#   "language": "en-US",
#   "expect": [{"check": "stops", "utterance": 1, "within_ms": 400},
#              {"check": "answered", "utterance": 1, "within_ms": 4000},
#              {"check": "talks_through", "utterance": 2, "max_gap_ms": 400},
#              {"check": "no_reply", "utterance": 2, "until": "next_start"}]
#
# The caller's speech is placed relative to where the bot's reply will be: the engine with the
# loadgen's fakes (default latency profile) answers a turn REPLY_LATENCY after it ends, and the
# fake LLM's reply (crates/testkit/src/openai.rs, default_reply) to a given sentence is fixed, so
# its length (60 ms of fake TTS audio per character) is given per call below. "first" of a reply
# is 0.2 s in (inside min_speaking_time), "start" 1 s in (past it), "middle" 3.5-4.5 s in, "tail" 1.2 s before its end (inside
# tail_protection_ms). Deterministic, no network; re-run after changing it:
#   scripts/make-scenarios.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/fixtures/scenarios"
RATE=8000
TOOL=make-scenarios
# shellcheck source=scripts/make-fixtures-lib.sh
source "$ROOT/scripts/make-fixtures-lib.sh"

rm -f "$OUT"/*.json "$OUT"/*.ulaw

# ---- timing model (s) -----------------------------------------------------------------------
WELCOME_END=4.0     # the welcome (about 3.1 s of audio) has played by then
REPLY_LATENCY=1.9   # end of a caller turn → the reply's first audio at the caller
# Thresholds of the checks (ms).
STOP_MS=400         # a barge-in outside the tail: the bot pauses at the VAD onset
STOP_TAIL_MS=1200   # in the tail the bot does not pause; it stops at the confirming words
STOP_GATED_MS=1000  # inside min_speaking_time (0.5 s) it stops at the first words after it
ANSWER_MS=4000
GAP_MS=400          # what a one-word backchannel may leave in the reply
# A two-word backchannel (0.8 s): the bot pauses at its onset and resumes once its words are
# known, about its length later (docs/PERFORMANCE.md); the issue's 400 ms is not met there.
LONG_BC_GAP_MS=650
COUGH_GAP_MS=1200   # a cough pauses the bot for the confirmation window

EXPECTS=()
LANGUAGE=en-US
SPECULATIVE=0       # 1: the scenario's assistant runs with enable_speculative_llm on
REPLY_START=0; REPLY_END=0

scenario() { # scenario NAME LANGUAGE FILTER NOISE_VOL GAIN_DB DESCRIPTION
  call_begin "$1" "$3" "$4" "$5" "$6"
  LANGUAGE="$2"; EXPECTS=(); SPECULATIVE=0
}

now_s() { awk -v p="$POS" -v r="$RATE" 'BEGIN { printf "%.3f", p / r }'; }

# silence_until SECONDS: silence up to that point of the call.
silence_until() {
  local d
  d=$(awk -v t="$1" -v n="$(now_s)" 'BEGIN { printf "%.3f", t - n }')
  if awk -v d="$d" 'BEGIN { exit !(d <= 0) }'; then
    echo "$TOOL: $CALL: position $1 s is already past ($(now_s) s)" >&2
    exit 1
  fi
  silence "$d"
}

# reply_to_last REPLY_SECONDS: the bot's reply to the utterance just said (REPLY_START/END, s).
reply_to_last() {
  REPLY_START=$(awk -v e="$LAST_END_MS" -v l="$REPLY_LATENCY" 'BEGIN { printf "%.3f", e / 1000 + l }')
  REPLY_END=$(awk -v s="$REPLY_START" -v d="$1" 'BEGIN { printf "%.3f", s + d }')
}

in_reply() { awk -v s="$REPLY_START" -v o="$1" 'BEGIN { printf "%.3f", s + o }'; }
before_reply_end() { awk -v e="$REPLY_END" -v o="$1" 'BEGIN { printf "%.3f", e - o }'; }
after_reply_end() { awk -v e="$REPLY_END" -v o="$1" 'BEGIN { printf "%.3f", e + o }'; }
after_last() { awk -v e="$LAST_END_MS" -v o="$1" 'BEGIN { printf "%.3f", e / 1000 + o }'; }

last() { echo $((UTT_COUNT - 1)); }
expect_stops() { EXPECTS+=("{\"check\": \"stops\", \"utterance\": $1, \"within_ms\": $2}"); }
expect_answered() { EXPECTS+=("{\"check\": \"answered\", \"utterance\": $1, \"within_ms\": $2}"); }
expect_talks_through() { EXPECTS+=("{\"check\": \"talks_through\", \"utterance\": $1, \"max_gap_ms\": $2}"); }
expect_reply_length() { EXPECTS+=("{\"check\": \"reply_length\", \"utterance\": $1, \"min_ms\": $2, \"max_ms\": $3}"); }
expect_no_reply() { EXPECTS+=("{\"check\": \"no_reply\", \"utterance\": $1, \"until\": \"${2:-next_start}\"}"); }

# scenario_end: hangs up at the current position (plus 0.2 s) and writes the files.
scenario_end() {
  local i last=$((${#EXPECTS[@]} - 1)) body
  body="  \"language\": \"$LANGUAGE\",\n"
  [ "$SPECULATIVE" = 1 ] && body+="  \"speculative\": true,\n"
  body+="  \"expect\": [\n"
  for i in "${!EXPECTS[@]}"; do
    if [ "$i" -lt "$last" ]; then body+="    ${EXPECTS[$i]},\n"; else body+="    ${EXPECTS[$i]}\n"; fi
  done
  body+="  ],\n"
  EXTRA_JSON="$(printf '%b' "$body")"$'\n'
  call_end 0.2
}

# ---- backchannels: start, middle and tail of a reply, in each lexicon language -------------
# backchannel NAME LANGUAGE VOICE TURN REPLY_S POSITION(start|middle|tail) WORD DESCRIPTION [MAX_GAP_MS]
backchannel() {
  local name="$1" lang="$2" voice="$3" turn="$4" reply_s="$5" pos="$6" word="$7" at
  scenario "$name" "$lang" telephone 0 0 "$8"
  silence_until "$WELCOME_END"
  say turn "$voice" 160 "$turn"; expect_answered "$(last)" "$ANSWER_MS"
  reply_to_last "$reply_s"
  case "$pos" in
    first) at=$(in_reply 0.2); within="$STOP_GATED_MS" ;;
    start) at=$(in_reply 1.0) ;;
    middle) at=$(in_reply 4.0) ;;
    tail) at=$(before_reply_end 1.2) ;;
  esac
  silence_until "$at"
  say backchannel "$voice" 150 "$word"
  expect_talks_through "$(last)" "${9:-$GAP_MS}"; expect_no_reply "$(last)"
  silence_until "$(after_reply_end 3.0)"
  scenario_end
}

backchannel bc_start_en_uh_huh en-US en-us+f2 "What do I need to bring to my first appointment?" 10.3 start \
  "uh-huh" "English 'uh-huh' 1 s into a reply: the bot talks through it and does not answer it."
backchannel bc_middle_en_yeah en-US en-gb+m3 "Can you tell me how the parking works at your office?" 10.0 middle \
  "yeah" "English 'yeah' in the middle of a reply."
backchannel bc_middle_en_okay en-US en-us+f3 "I want to know how long the warranty lasts." 9.7 middle \
  "okay" "English 'okay' in the middle of a reply."
backchannel bc_tail_en_mm_hmm en-US en-us+m1 "How do I reset my online banking password?" 10.0 tail \
  "mm-hmm" "English 'mm-hmm' in the last 2 s of a reply (tail protection), over its closing question: a continuer, not an answer."
backchannel bc_start_es_claro es-ES es "¿Puedo cambiar mi cita para el viernes?" 9.5 start \
  "claro" "Spanish 'claro' 1 s into a reply (assistant language es-ES)."
backchannel bc_middle_es_si es-ES es-419 "Necesito información sobre los horarios de la clínica." 10.4 middle \
  "sí" "Spanish 'sí' in the middle of a reply, Latin American voice."
backchannel bc_tail_es_aja es-ES es+f2 "Quiero saber cuánto cuesta una limpieza dental." 11.6 tail \
  "ajá" "Spanish 'ajá' in the tail of a reply (its closing question), female voice."
backchannel bc_middle_fr_oui fr-FR fr "Je voudrais connaître vos horaires d'ouverture." 11.6 middle \
  "oui" "French 'oui' in the middle of a reply (assistant language fr-FR)."
backchannel bc_tail_fr_je_vois fr-FR fr-be "Est-ce que vous livrez à domicile le samedi?" 10.3 tail \
  "je vois" "French 'je vois' in the tail of a reply (its closing question), Belgian voice."
backchannel bc_start_de_genau de-DE de "Ich möchte einen Termin für nächste Woche vereinbaren." 12.0 start \
  "genau" "German 'genau' 1 s into a reply (assistant language de-DE)."
backchannel bc_middle_de_alles_klar de-DE de+f2 "Wie lange dauert die Lieferung nach Berlin?" 11.4 middle \
  "alles klar" "German 'alles klar' (two words, 0.8 s) in the middle of a reply, female voice: the bot resumes once both words are known." \
  "$LONG_BC_GAP_MS"

# A yes over the closing question answers it (a lexicon `answer`): the bot finishes, then replies.
scenario bc_tail_en_yeah_answers en-US telephone 0 0 \
  "English 'yeah' over the reply's closing question ('Is there anything else I can do for you?'): not a barge-in, but an answer once the bot has finished."
silence_until "$WELCOME_END"
say turn en-gb 160 "Do you sell gift cards?"; expect_answered "$(last)" "$ANSWER_MS"
reply_to_last 8.6
silence_until "$(before_reply_end 1.2)"
say backchannel en-gb 150 "yeah"
expect_talks_through "$(last)" "$GAP_MS"; expect_answered "$(last)" "$ANSWER_MS"
silence_until "$(after_last 4.5)"
scenario_end

# ---- real barge-ins: start, middle and tail of a reply --------------------------------------
# barge NAME VOICE WPM TURN REPLY_S POSITION SENTENCE DESCRIPTION
barge() {
  local name="$1" voice="$2" wpm="$3" turn="$4" reply_s="$5" pos="$6" sentence="$7" at within
  scenario "$name" en-US telephone 0 0 "$8"
  silence_until "$WELCOME_END"
  say turn "$voice" "$wpm" "$turn"; expect_answered "$(last)" "$ANSWER_MS"
  reply_to_last "$reply_s"
  within="$STOP_MS"
  case "$pos" in
    first) at=$(in_reply 0.2); within="$STOP_GATED_MS" ;;
    start) at=$(in_reply 1.0) ;;
    middle) at=$(in_reply 3.5) ;;
    tail) at=$(before_reply_end 1.2); within="$STOP_TAIL_MS" ;;
  esac
  silence_until "$at"
  say barge_in "$voice" "$wpm" "$sentence"
  expect_stops "$(last)" "$within"; expect_answered "$(last)" "$ANSWER_MS"
  silence_until "$(after_last 4.5)"
  scenario_end
}

barge barge_in_start en-gb+m3 170 "Can you tell me your opening hours?" 9.4 start \
  "Sorry, actually I only need to know whether you are open on Sunday mornings." \
  "A whole sentence 1 s into the reply: the bot stops and answers it."
barge barge_in_first en-gb+m3 170 "Can you tell me your opening hours?" 9.4 first \
  "Sorry, actually I only need to know whether you are open on Sunday mornings." \
  "A whole sentence 0.2 s into the reply, inside min_speaking_time: the bot stops once that has passed and answers it."
barge barge_in_middle en-us+m2 180 "I need to change the address on my account." 11.0 middle \
  "Wait, wait, it is not my address, it is my daughter's account that needs changing." \
  "A whole sentence in the middle of the reply, fast male voice."
barge barge_in_middle_slow en-gb-x-rp 135 "Do you have any appointments left this week?" 9.8 middle \
  "Actually, can we make it the afternoon instead, if that is possible?" \
  "A slow received-pronunciation voice cuts in mid-reply."
barge barge_in_tail en-us 165 "What time do you close on Fridays?" 10.9 tail \
  "Actually, can we make it the afternoon instead?" \
  "A sentence 1.2 s before the end of the reply (tail protection): a real interruption stops it there too."
barge barge_in_tail_female en-us+f2 165 "How much does a cleaning cost?" 10.6 tail \
  "Hold on, I also wanted to ask about whitening, is that extra?" \
  "A real interruption in the tail, female voice."

# ---- noise and coughs -------------------------------------------------------------------------
scenario cough_during_reply en-US telephone 0 0 \
  "A 300 ms cough 3 s into a reply: the bot may pause but must resume, neither cut nor answering it."
silence_until "$WELCOME_END"
say turn en-us+m3 170 "Do you have any appointments left this week?"; expect_answered "$(last)" "$ANSWER_MS"
reply_to_last 9.8
silence_until "$(in_reply 3.0)"
noise_burst noise 0.30 300 2500 "[cough]"
expect_talks_through "$(last)" "$COUGH_GAP_MS"; expect_no_reply "$(last)"
silence_until "$(after_reply_end 3.0)"
scenario_end

scenario coughs_between_turns en-US telephone 0.008 0 \
  "Two coughs in the silence after a reply, on a line with light pink noise: no reply to either."
silence_until "$WELCOME_END"
say turn en-gb+f2 160 "Can I pay my bill over the phone?"; expect_answered "$(last)" "$ANSWER_MS"
reply_to_last 9.1
silence_until "$(after_reply_end 1.5)"
noise_burst noise 0.30 300 2500 "[cough]"; expect_no_reply "$(last)"
silence 1.5
noise_burst noise 0.25 400 3000 "[cough]"; expect_no_reply "$(last)"
silence 4.0
say turn en-gb+f2 160 "Okay, thank you."
silence 0.5
scenario_end

# ---- pauses mid-sentence --------------------------------------------------------------------
# pause NAME VOICE WPM FIRST GAP_S REST DESCRIPTION
pause() {
  scenario "$1" en-US telephone 0 0 "$7"
  silence_until "$WELCOME_END"
  say pause "$2" "$3" "$4"; expect_no_reply "$(last)" next_end
  silence "$5"
  say turn "$2" "$3" "$6"; expect_answered "$(last)" "$ANSWER_MS"
  silence_until "$(after_last 4.5)"
  scenario_end
}

pause pause_i_want_to en-us+m1 145 "I want to..." 1.2 "book a table for two at seven tonight." \
  "'I want to...', 1.2 s of silence, then the rest: no reply is heard in the pause."
pause pause_account_number en-gb+f2 150 "So my account number is..." 1.5 "four five seven two nine." \
  "'So my account number is...', 1.5 s, then the digits: no reply in the pause."

# ---- talking over the welcome -----------------------------------------------------------------
# welcome NAME VOICE AT_S SENTENCE DESCRIPTION
welcome() {
  scenario "$1" en-US telephone 0 0 "$5"
  silence_until "$3"
  say barge_in "$2" 170 "$4"
  # The welcome (3.1 s) is short: after its first second the rest is its protected tail.
  expect_stops "$(last)" "$STOP_TAIL_MS"; expect_answered "$(last)" "$ANSWER_MS"
  silence_until "$(after_last 4.5)"
  scenario_end
}

welcome welcome_talk_over en-us+f3 1.6 "Hi, yes, I'm calling about my order from last week, it still hasn't arrived." \
  "The caller talks over the welcome message 1.6 s into the call: it stops and the bot answers."
welcome welcome_talk_over_late en-gb 2.4 "Hello, I need to speak to someone about a refund please." \
  "The caller talks over the second half of the welcome message."

# ---- two turns with a long silence between ----------------------------------------------------
scenario long_silence_two_turns en-US telephone 0 0 \
  "A turn, its reply, 6 s of silence, then a second turn: both are answered."
silence_until "$WELCOME_END"
say turn en-us 160 "Hi, I'd like to book an appointment for next Tuesday, please."; expect_answered "$(last)" "$ANSWER_MS"
reply_to_last 11.7
silence_until "$(after_reply_end 6.0)"
say turn en-us 160 "Around three in the afternoon would be great."; expect_answered "$(last)" "$ANSWER_MS"
silence_until "$(after_last 4.5)"
scenario_end

# ---- a caller who keeps talking over a short reply ------------------------------------------
scenario keeps_talking_over_reply en-US telephone 0 0 \
  "The caller stops, the reply starts, and the caller goes on talking over it 1 s in for about 4 s: the bot stops and answers the rest."
silence_until "$WELCOME_END"
say turn en-us+m2 170 "I'm calling about the invoice you sent me."; expect_answered "$(last)" "$ANSWER_MS"
reply_to_last 11.6
silence_until "$(in_reply 1.0)"
say barge_in en-us+m2 170 "and the amount is wrong, it says two hundred dollars but we agreed on one hundred and fifty, so I need a corrected one."
expect_stops "$(last)" "$STOP_MS"; expect_answered "$(last)" "$ANSWER_MS"
silence_until "$(after_last 4.5)"
scenario_end

scenario keeps_talking_before_reply en-US telephone 0 0 \
  "The caller stops for 0.9 s, long enough for the engine to take it as a turn, then goes on before the reply is heard: no reply is heard over them, the whole is answered."
silence_until "$WELCOME_END"
say turn en-gb+m3 165 "I'd like to move my appointment."; expect_no_reply "$(last)" next_end
silence 0.9
say turn en-gb+m3 165 "from Tuesday morning to Thursday afternoon, if you have anything free then, because I am travelling."
expect_answered "$(last)" "$ANSWER_MS"
silence_until "$(after_last 4.5)"
scenario_end

# ---- speculation that would be wrong ----------------------------------------------------------
# With enable_speculative_llm the engine starts the LLM on the interim words once they stop
# changing for speculative_debounce_ms (300 ms). Here the caller stops after a sentence that
# sounds complete, long enough for that (0.25 s of pause: with the quiet ends of the words the fake STT hears about 0.4 s, under the 500 ms endpointing, so one turn), then
# takes it back. A reply to the first sentence alone must never be heard: not in the pause, and
# not instead of the reply to the whole. The fake LLM's reply echoes the caller's words (up to
# 12) and the fake TTS speaks 60 ms per character, so the reply's length tells which words were
# answered: to the first sentence alone 8.9-10.5 s, to the whole 11.8-13.4 s (the four
# follow-up sentences of crates/testkit/src/openai.rs default_reply).
scenario spec_takes_it_back en-US telephone 0 0 \
  "Speculation on: 'I want to cancel my appointment.', 0.25 s, 'Actually no, keep it, and move my cleaning to Monday instead.': only the reply to the whole is heard, after the whole."
SPECULATIVE=1
silence_until "$WELCOME_END"
say pause en-us+m3 165 "I want to cancel my appointment."; expect_no_reply "$(last)" next_end
silence 0.25
say turn en-us+m3 165 "Actually no, keep it, and move my cleaning to Monday instead."
expect_answered "$(last)" "$ANSWER_MS"; expect_reply_length "$(last)" 11000 14500
silence_until "$(after_last 17.5)"
scenario_end

du -ch "$OUT"/*.ulaw | tail -1
