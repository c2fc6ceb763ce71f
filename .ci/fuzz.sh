#!/usr/bin/env bash
# CI: a short run of every cargo-fuzz target (libFuzzer, nightly): host (MO folding and
# keyword router, content policy, long-MO intake, statement figures, module upload),
# SMPP, CMPP and SGIP decoding. Fails on any crash, property failure or timeout.
#
#   .ci/fuzz.sh                    every target, FUZZ_SECONDS (default 10) each
#   FUZZ_SECONDS=300 .ci/fuzz.sh   longer
#   .ci/fuzz.sh smpp receipt_text  one crate (host|smpp|cmpp|sgip), optionally one target
#   FUZZ_CRATES="smpp cmpp sgip" .ci/fuzz.sh   the protocol crates only (see the cost below)
#
# Cost on 2 shared cores (README, "Fuzzing"): cargo-fuzz install 1 min 41 s; the protocol
# crates build cold in about 2 min; the host crate (wasmtime, cranelift, sqlx, our
# whole host, all with coverage instrumentation) about 30 min cold in release, so it is
# built with `--dev` unless FUZZ_HOST_RELEASE is set (27 min cold beside a test run); a runner that
# keeps target/fuzz rebuilds only what changed.
#
# Builds: `--sanitizer none` (the code is safe Rust; AddressSanitizer would double the
# build and slow every run), `-a` (debug assertions and overflow checks on: money
# arithmetic must never wrap), release, one target dir for the four fuzz crates
# (target/fuzz) so shared dependencies are built once. New inputs go to
# target/fuzz/corpus (the checked-in corpus is read, never written); a crash leaves its
# input in target/fuzz/artifacts.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
seconds="${FUZZ_SECONDS:-10}"
only_crate="${1:-}"
only_target="${2:-}"

step() { printf '\n=== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }

step "nightly toolchain and cargo-fuzz"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo +nightly install cargo-fuzz --locked

# The guests the host embeds are built by the pinned toolchain (nightly may lack the
# wasm32-wasip2 standard library): the same ones the stable build makes.
TONGDAO_GUESTS_TOOLCHAIN="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)"
export TONGDAO_GUESTS_TOOLCHAIN
target_dir="$root/target/fuzz"
base_flags=(--sanitizer none -a --target-dir "$target_dir")

failed=()
for crate in ${FUZZ_CRATES:-host smpp cmpp sgip}; do
  [[ -n "$only_crate" && "$crate" != "$only_crate" ]] && continue
  build_flags=("${base_flags[@]}")
  # The host crate in CI: a debug build (`--dev`, no optimisation) compiles wasmtime,
  # cranelift and sqlx with coverage in a fraction of the release build's time; its
  # runs are slower, which a smoke run of seconds can afford. FUZZ_HOST_RELEASE=1
  # builds it optimised, for long runs.
  if [[ "$crate" == host && -z "${FUZZ_HOST_RELEASE:-}" ]]; then
    build_flags+=(--dev)
  fi
  step "build $crate/fuzz (${build_flags[*]})"
  (cd "$crate" && cargo +nightly fuzz build "${build_flags[@]}")
  for target in $(cd "$crate" && cargo +nightly fuzz list); do
    [[ -n "$only_target" && "$target" != "$only_target" ]] && continue
    step "fuzz $crate/$target for ${seconds}s"
    new="$target_dir/corpus/$crate/$target"
    artifacts="$target_dir/artifacts/$crate/$target"
    log="$target_dir/$crate-$target.log"
    rm -rf "$artifacts"
    mkdir -p "$new" "$artifacts"
    if (cd "$crate" && cargo +nightly fuzz run "${build_flags[@]}" "$target" \
      "$new" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -timeout=30 -print_final_stats=1 \
      -artifact_prefix="$artifacts/" >"$log" 2>&1); then
      grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true
    else
      tail -40 "$log"
      failed+=("$crate/$target")
    fi
  done
done

if ((${#failed[@]})); then
  step "FAILED: ${failed[*]} (inputs in $target_dir/artifacts, logs in $target_dir/*.log)"
  exit 1
fi
step "every fuzz target ran without a failure"
