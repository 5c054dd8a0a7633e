#!/usr/bin/env bash
# Runs every fuzz target for many inputs, one target after another, and prints how many inputs
# each one ran. The targets are the bolero `#[test]`s that `cargo test` runs with a small bound
# (see docs/security/fuzzing.md); here they run with bolero's random engine for
# BOLERO_RANDOM_ITERATIONS inputs each, built in an optimised profile that keeps debug
# assertions and overflow checks ("fuzz", defined below through CARGO_PROFILE_FUZZ_*, so
# Cargo.toml needs no extra profile).
#
# Usage: ./scripts/fuzz.sh [inputs-per-target] [name-filter]
#   inputs-per-target  default 2000000
#   name-filter        only targets whose name contains it (e.g. `media`, `assistant`)
# A failing target prints the input and BOLERO_RANDOM_SEED=… to replay it with
#   BOLERO_RANDOM_SEED=<seed> cargo test -p <package> <name> -- --exact
# The summary goes to stdout and to target/fuzz-report.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

inputs="${1:-2000000}"
filter="${2:-}"
case "$inputs" in
  '' | *[!0-9]*) echo "inputs-per-target must be a number, got '$inputs'" >&2; exit 2 ;;
esac

export CARGO_PROFILE_FUZZ_INHERITS=release
export CARGO_PROFILE_FUZZ_DEBUG_ASSERTIONS=true
export CARGO_PROFILE_FUZZ_OVERFLOW_CHECKS=true
export CARGO_PROFILE_FUZZ_DEBUG=line-tables-only
export CARGO_TERM_COLOR=never

# package | test binary (integration test name, or the crate for its unit tests) | test name
targets=(
  "switchboard-telephony|fuzz_media|fuzz_media_arbitrary_frames"
  "switchboard-telephony|fuzz_media|fuzz_media_damaged_frames"
  "switchboard-telephony|fuzz_media|fuzz_media_inbound_round_trip"
  "switchboard-telephony|fuzz_media|fuzz_media_outbound_round_trip"
  "switchboard-telephony|fuzz_webhook|fuzz_webhook_arbitrary_forms"
  "switchboard-telephony|fuzz_webhook|fuzz_webhook_damaged_forms"
  "switchboard-telephony|fuzz_webhook|fuzz_webhook_form_round_trip"
  "switchboard-telephony|fuzz_webhook|fuzz_signature_arbitrary_inputs"
  "switchboard-telephony|fuzz_webhook|fuzz_signature_sign_then_validate"
  "switchboard-telephony|fuzz_stream_token|fuzz_stream_token_forged"
  "switchboard-telephony|fuzz_stream_token|fuzz_stream_token_issued"
  "switchboard-assistant|fuzz_assistant|fuzz_assistant_arbitrary_bytes"
  "switchboard-assistant|fuzz_assistant|fuzz_assistant_damaged_record"
  "switchboard-assistant|fuzz_assistant|fuzz_assistant_structured_bodies"
  "switchboard-assistant|fuzz_assistant|fuzz_assistant_create_near_valid"
  "switchboard-assistant|fuzz_assistant|fuzz_assistant_patch_valid_record"
  "switchboard-providers|switchboard_providers|fuzz_tests::fuzz_sse_arbitrary_bytes"
  "switchboard-providers|switchboard_providers|fuzz_tests::fuzz_sse_structured_streams"
  "switchboard-providers|switchboard_providers|fuzz_tests::fuzz_sse_bounded_memory"
  "switchboard-providers|switchboard_providers|fuzz_tests::fuzz_llm_openai_stream"
  "switchboard-providers|switchboard_providers|fuzz_tests::fuzz_llm_anthropic_stream"
  "switchboard-providers|switchboard_providers|fuzz_tests::fuzz_llm_arbitrary_streams"
  "switchboard-providers|switchboard_providers|fuzz_tests::fuzz_stt_deepgram_messages"
  "switchboard-providers|switchboard_providers|fuzz_tests::fuzz_http_error_bodies"
  "switchboard-providers|switchboard_providers|fuzz_tests::fuzz_tts_audio_header"
  "switchboard-providers|switchboard_providers|tts::elevenlabs::tests::fuzz_elevenlabs_server_messages"
  "switchboard-providers|switchboard_providers|tts::cartesia::tests::fuzz_cartesia_server_messages"
)

selected=()
for t in "${targets[@]}"; do
  [[ -z "$filter" || "${t##*|}" == *"$filter"* ]] && selected+=("$t")
done
if [ "${#selected[@]}" -eq 0 ]; then
  echo "no target matches '$filter'" >&2
  exit 2
fi

# Build every test binary once, for all packages together (building one package alone would
# unify features differently and rebuild), and note where each binary is.
packages=$(printf '%s\n' "${selected[@]}" | cut -d'|' -f1 | sort -u | sed 's/^/-p /' | tr '\n' ' ')
artifacts=$(mktemp)
log=$(mktemp)
trap 'rm -f "$artifacts" "$log"' EXIT
# shellcheck disable=SC2086 # word splitting of the package list is intended
cargo test --profile fuzz --locked $packages --no-run --message-format=json-render-diagnostics \
  | grep '"reason":"compiler-artifact"' | grep '"executable":"' >"$artifacts"

# The test binary named $1 (target name), and the directory of its package (cargo runs tests
# there).
binary() {
  grep "\"name\":\"$1\"" "$artifacts" | grep -o '"executable":"[^"]*"' | head -1 | cut -d'"' -f4
}
package_dir() {
  grep "\"name\":\"$1\"" "$artifacts" | grep -o '"manifest_path":"[^"]*"' | head -1 |
    cut -d'"' -f4 | xargs dirname
}

report=target/fuzz-report.txt
{
  echo "# fuzz run $(date -u +%Y-%m-%dT%H:%M:%SZ), $inputs inputs per target, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  printf '%-76s %12s %8s  %s\n' target inputs seconds result
} | tee "$report"
failed=0
for t in "${selected[@]}"; do
  IFS='|' read -r package test_binary name <<<"$t"
  exe=$(binary "$test_binary")
  dir=$(package_dir "$test_binary")
  if [ -z "$exe" ] || [ -z "$dir" ]; then
    echo "no test binary $test_binary for $package" >&2
    exit 1
  fi
  start=$(date +%s)
  if (cd "$dir" && BOLERO_RANDOM_ITERATIONS="$inputs" "$exe" --exact "$name" --nocapture \
    --test-threads 1) >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    failed=1
    cat "$log" >&2
  fi
  seconds=$(($(date +%s) - start))
  # bolero reports the inputs it ran ("rng inputs: N"); a target that ran none has failed.
  ran=$(grep -ao 'rng inputs: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  if [ -z "$ran" ]; then
    ran=0
    result=FAILED
    failed=1
    cat "$log" >&2
  fi
  printf '%-76s %12s %8s  %s\n' "$package::$name" "$ran" "$seconds" "$result" | tee -a "$report"
done
exit "$failed"
