#!/usr/bin/env bash
# Builds wire-producer (scripts/wire-producer/: a franz-go producer of raw
# records, the outside client of the wire tests) once into
# ${XDG_CACHE_HOME:-$HOME/.cache}/consumer/wire-producer-<hash>/wire-producer,
# the hash taken over its go.mod, go.sum and main.go, so a change to any of
# them builds anew; when the binary is there this exits at once. A second run
# waits for a first one (flock). Only the Go module proxy is needed.
#
#   scripts/build-wire-producer.sh            build it if missing
#   scripts/build-wire-producer.sh --print    print the binary's path, build nothing
set -euo pipefail

SRC="$(cd "$(dirname "$0")/wire-producer" && pwd)"
HASH=$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-16)
DIR="${XDG_CACHE_HOME:-$HOME/.cache}/consumer/wire-producer-$HASH"
BIN="$DIR/wire-producer"

if [ "${1:-}" = "--print" ]; then
  echo "$BIN"
  exit 0
fi
[ -x "$BIN" ] && exit 0

command -v go >/dev/null 2>&1 || { echo "build-wire-producer: 'go' is needed to build it" >&2; exit 1; }
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9
[ -x "$BIN" ] && exit 0  # another run built it while we waited

export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false -mod=readonly"
start=$(date +%s)
echo "build-wire-producer: building wire-producer $HASH (once; about a minute)" >&2
(cd "$SRC" && go build -trimpath -o "$DIR/.wire-producer.tmp" .)
mv "$DIR/.wire-producer.tmp" "$BIN"
echo "build-wire-producer: built in $(( $(date +%s) - start ))s" >&2
