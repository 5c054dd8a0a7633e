#!/usr/bin/env bash
# Shared by scripts/make-fixtures.sh and scripts/make-scenarios.sh (sourced, not run): lays
# caller audio out on a timeline with espeak-ng and sox and writes <name>.ulaw + <name>.json
# into $OUT. The caller sets ROOT, OUT, RATE and TOOL (its name, for messages) first.
#
# Per call: call_begin, then silence / say / noise_burst in time order, then call_end. After
# say/noise_burst, LAST_START_MS and LAST_END_MS hold the utterance's times and UTT_COUNT its
# index + 1 (for expectations that name utterances).

if ! command -v espeak-ng >/dev/null || ! command -v sox >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y espeak-ng sox
  else
    echo "$TOOL: needs espeak-ng and sox (apt-get install espeak-ng sox)" >&2
    exit 1
  fi
fi

# Repeatable output: fixed random seed for noise (-R) and no dither (-D), so re-running the script
# reproduces the committed files byte for byte.
sox() { command sox -R -D "$@"; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

# ---- per-call state -------------------------------------------------------------------------
CALL=""; DESC=""; FILTER=""; NOISE_VOL=""; GAIN_DB=""
EXTRA_JSON="" # more top-level JSON members ("key": value lines, each ending in a comma)
POS=0          # samples written so far
SEGS=()        # wav segments in order
UTTS=()        # JSON objects of utterances
SEQ=0

json_escape() { # escapes backslash and double quote for a JSON string
  local s="${1//\\/\\\\}"
  printf '%s' "${s//\"/\\\"}"
}

# call_begin NAME FILTER(telephone|wide) NOISE_VOL(0 = none) GAIN_DB DESCRIPTION
call_begin() {
  CALL="$1"; FILTER="$2"; NOISE_VOL="$3"; GAIN_DB="$4"; DESC="$5"
  POS=0; SEGS=(); UTTS=(); SEQ=0; EXTRA_JSON=""
}

# next_seg: sets SEG to a fresh segment path (not in a subshell: SEQ must persist).
next_seg() { SEQ=$((SEQ + 1)); SEG="$(printf '%s/%s-%03d.wav' "$WORK" "$CALL" "$SEQ")"; }

# silence SECONDS
silence() {
  local n seg
  n=$(awk -v s="$1" -v r="$RATE" 'BEGIN { printf "%d", s * r + 0.5 }')
  next_seg; seg="$SEG"
  sox -r "$RATE" -c 1 -n -r "$RATE" -c 1 -b 16 -e signed-integer "$seg" trim 0s "${n}s"
  SEGS+=("$seg"); POS=$((POS + n))
}

add_utterance() { # add_utterance SEG KIND TEXT
  local n start
  n=$(soxi -s "$1")
  start=$POS
  SEGS+=("$1"); POS=$((POS + n))
  UTTS+=("$(printf '{"text": "%s", "start_ms": %d, "end_ms": %d, "kind": "%s"}' \
    "$(json_escape "$3")" $((start / 8)) $((POS / 8)) "$2")")
  LAST_START_MS=$((start / 8)); LAST_END_MS=$((POS / 8)); UTT_COUNT=${#UTTS[@]}
}

# say KIND VOICE WPM TEXT
say() {
  local kind="$1" voice="$2" wpm="$3" text="$4" raw seg
  raw="$WORK/espeak.wav"
  next_seg; seg="$SEG"
  espeak-ng -v "$voice" -s "$wpm" -w "$raw" "$text"
  # 8 kHz mono 16-bit; trim leading and trailing silence; peak at -6 dBFS.
  sox "$raw" -r "$RATE" -c 1 -b 16 -e signed-integer "$seg" \
    silence 1 0.01 0.5% reverse silence 1 0.01 0.5% reverse norm -6
  add_utterance "$seg" "$kind" "$text"
}

# noise_burst KIND SECONDS LOW_HZ HIGH_HZ TEXT: a cough-like burst of band-limited noise.
noise_burst() {
  local seg
  next_seg; seg="$SEG"
  sox -r "$RATE" -c 1 -n -r "$RATE" -c 1 -b 16 -e signed-integer "$seg" synth "$2" whitenoise vol 0.4 \
    sinc "$3-$4" fade q 0.015 "$2" "$(awk -v d="$2" 'BEGIN { print d * 0.6 }')" norm -4
  add_utterance "$seg" "$1" "$5"
}

# call_end TAIL_SECONDS: lays out the timeline, adds line effects, writes .ulaw and .json.
call_end() {
  silence "$1"
  local full="$WORK/$CALL-full.wav" line="$WORK/$CALL-line.wav" effects=()
  sox "${SEGS[@]}" "$full"
  if [ "$NOISE_VOL" != "0" ]; then
    local noise="$WORK/$CALL-noise.wav"
    sox -r "$RATE" -c 1 -n -r "$RATE" -c 1 -b 16 -e signed-integer "$noise" synth "${POS}s" pinknoise \
      vol "$NOISE_VOL"
    sox -m -v 1 "$full" -v 1 "$noise" "$line"
  else
    cp "$full" "$line"
  fi
  [ "$FILTER" = "telephone" ] && effects+=(sinc 300-3400)
  [ "$GAIN_DB" != "0" ] && effects+=(gain "$GAIN_DB")
  # -G guards against clipping; the file keeps its exact length (POS samples).
  sox -G "$line" -t raw -r "$RATE" -e mu-law -b 8 -c 1 "$OUT/$CALL.ulaw" "${effects[@]}"
  local bytes
  bytes=$(stat -c %s "$OUT/$CALL.ulaw")
  if [ "$bytes" -ne "$POS" ]; then
    echo "$TOOL: $CALL: $bytes bytes, expected $POS" >&2
    exit 1
  fi
  {
    printf '{\n  "name": "%s",\n  "description": "%s",\n  "utterances": [\n' \
      "$CALL" "$(json_escape "$DESC")"
    local i last=$((${#UTTS[@]} - 1))
    for i in "${!UTTS[@]}"; do
      if [ "$i" -lt "$last" ]; then printf '    %s,\n' "${UTTS[$i]}"; else printf '    %s\n' "${UTTS[$i]}"; fi
    done
    printf '  ],\n%s  "hangup_at_ms": %d\n}\n' "$EXTRA_JSON" $((POS / 8))
  } > "$OUT/$CALL.json"
  echo "$TOOL: $CALL: $((POS / 8)) ms, ${#UTTS[@]} utterances, $bytes bytes"
}
