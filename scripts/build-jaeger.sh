#!/usr/bin/env bash
# Builds Jaeger (the tracing backend the integration tests export to) once
# from the Go module proxy into
# ${XDG_CACHE_HOME:-$HOME/.cache}/consumer/jaeger-<version>/jaeger; when it is
# there this exits at once. A second run waits for a first one (flock).
#
#   scripts/build-jaeger.sh            build it if missing
#   scripts/build-jaeger.sh --print    print the binary's path, build nothing
#
# `go install ...@version` refuses the module (its go.mod has replace
# directives), so a scratch module takes it as a tool dependency and builds it.
set -euo pipefail

VERSION=v1.76.0
DIR="${XDG_CACHE_HOME:-$HOME/.cache}/consumer/jaeger-$VERSION"
BIN="$DIR/jaeger"

if [ "${1:-}" = "--print" ]; then
  echo "$BIN"
  exit 0
fi
[ -x "$BIN" ] && exit 0

command -v go >/dev/null 2>&1 || { echo "build-jaeger: 'go' is needed to build Jaeger $VERSION" >&2; exit 1; }
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9
[ -x "$BIN" ] && exit 0  # another run built it while we waited

WORK=$(mktemp -d)
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"
start=$(date +%s)
echo "build-jaeger: building Jaeger $VERSION (once; several minutes)" >&2
cd "$WORK"
go mod init consumer.invalid/jaeger-build >/dev/null 2>&1
go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$VERSION"
go build -o "$WORK/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger
mv "$WORK/jaeger" "$DIR/.jaeger.tmp"
mv "$DIR/.jaeger.tmp" "$BIN"
echo "build-jaeger: Jaeger $VERSION built in $(( $(date +%s) - start ))s" >&2
