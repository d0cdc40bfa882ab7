#!/usr/bin/env bash
# Builds Apicurio Registry 2.4.2.Final (a Confluent-compatible Schema Registry,
# the schema-registry tests' server) once with Maven and the Quarkus plugin from
# the wrapper project scripts/schema-registry/ into
# ${XDG_CACHE_HOME:-$HOME/.cache}/consumer/apicurio-registry-2.4.2.Final-<hash>/
# (runner jar + lib/), the hash taken over the wrapper's sources, so a change to
# any of them builds anew; when the build is there this exits at once. A second
# run waits for a first one (flock). Only Maven Central is needed.
#
#   scripts/build-schema-registry.sh            build it if missing
#   scripts/build-schema-registry.sh --print    print the runner jar's path, build nothing
set -euo pipefail

VERSION=2.4.2.Final
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SRC="$ROOT/scripts/schema-registry"
HASH=$( (cd "$SRC" && find pom.xml src -type f | LC_ALL=C sort | xargs cat) | sha256sum | cut -c1-16)
DIR="${XDG_CACHE_HOME:-$HOME/.cache}/consumer/apicurio-registry-$VERSION-$HASH"
JAR="$DIR/registry-runner.jar"

if [ "${1:-}" = "--print" ]; then
  echo "$JAR"
  exit 0
fi
[ -f "$DIR/.complete" ] && exit 0

command -v mvn >/dev/null 2>&1 || { echo "build-schema-registry: 'mvn' is needed to build Apicurio Registry $VERSION" >&2; exit 1; }
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9
[ -f "$DIR/.complete" ] && exit 0  # another run built it while we waited

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# Apicurio's POMs name repositories that cannot be reached from here; a mirror
# of everything but Central onto an empty local folder makes Maven skip them
# at once instead of waiting for each to time out.
mkdir -p "$WORK/empty-repo"
cat >"$WORK/settings.xml" <<XML
<settings>
  <mirrors>
    <mirror>
      <id>only-central</id>
      <mirrorOf>*,!central</mirrorOf>
      <url>file://$WORK/empty-repo</url>
    </mirror>
  </mirrors>
</settings>
XML
cp -r "$SRC/pom.xml" "$SRC/src" "$WORK/"
start=$(date +%s)
echo "build-schema-registry: building Apicurio Registry $VERSION $HASH (once; a minute or two)" >&2
mvn -q -B -s "$WORK/settings.xml" -f "$WORK/pom.xml" \
  "-Dmaven.repo.local=$ROOT/.cache/m2" package -DskipTests >"$WORK/build.log" 2>&1 \
  || { tail -n 60 "$WORK/build.log" >&2; echo "build-schema-registry: the build failed" >&2; exit 1; }
rm -rf "$DIR/lib" "$DIR/registry-runner.jar"
mv "$WORK/target/lib" "$DIR/lib"
mv "$WORK"/target/*-runner.jar "$JAR"
touch "$DIR/.complete"
echo "build-schema-registry: built in $(( $(date +%s) - start ))s" >&2
