#!/usr/bin/env bash
# Installs herd's pinned external tools into ./bin, once: a tool whose
# pinned version is already there is skipped. Builds use the Go module
# proxy and the machine's Go build cache, so a second machine run is fast.
#
#   scripts/tools.sh                 # everything the tests need
#   scripts/tools.sh ollama nats     # only these
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/bin"
mkdir -p "$BIN"

declare -A PKG=(
  [ollama]="github.com/ollama/ollama@v0.6.5"
  [nats-server]="github.com/nats-io/nats-server/v2@v2.15.2"
  [nats]="github.com/nats-io/natscli/nats@v0.5.0"
  [golangci-lint]="github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0"
  [promtool]="github.com/prometheus/prometheus/cmd/promtool@v0.316.0"
)

want=("$@")
[ ${#want[@]} -eq 0 ] && want=(ollama nats-server nats promtool)

for tool in "${want[@]}"; do
  pkg="${PKG[$tool]:-}"
  if [ -z "$pkg" ]; then
    echo "tools.sh: unknown tool $tool (known: ${!PKG[*]})" >&2
    exit 2
  fi
  stamp="$BIN/.$tool.version"
  if [ -x "$BIN/$tool" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$pkg" ]; then
    continue
  fi
  echo "tools.sh: installing $pkg into bin/ (one time; ollama takes about 3 minutes on 2 cores, promtool about 6)" >&2
  start=$(date +%s)
  GOBIN="$BIN" go install "$pkg"
  echo "$pkg" > "$stamp"
  echo "tools.sh: $tool ready in $(( $(date +%s) - start ))s" >&2
done
