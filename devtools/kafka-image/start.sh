#!/bin/sh
# Writes server.properties from KAFKA_* variables (the apache/kafka image's
# convention), formats the log directory once, then runs the broker in the
# foreground so it receives the container's SIGTERM.
set -eu
conf=/var/lib/kafka/server.properties
: >"$conf"
env | grep '^KAFKA_' | while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS) continue ;;
  esac
  key=$(printf '%s' "${name#KAFKA_}" | tr 'A-Z' 'a-z' \
        | sed -e 's/___/\x01/g' -e 's/__/-/g' -e 's/_/./g' -e 's/\x01/_/g')
  printf '%s=%s\n' "$key" "$value" >>"$conf"
done
grep -q '^log.dirs=' "$conf" || echo 'log.dirs=/var/lib/kafka/data' >>"$conf"
cp="/opt/kafka/libs/*"
java -cp "$cp" kafka.tools.StorageTool format --ignore-formatted -c "$conf" \
  -t "${CLUSTER_ID:-$(java -cp "$cp" kafka.tools.StorageTool random-uuid)}" >/dev/null
# shellcheck disable=SC2086 # the *_OPTS variables are lists of JVM flags
exec java ${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m} \
  ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1} ${KAFKA_OPTS:-} \
  -Djava.awt.headless=true -Dlog4j2.configurationFile=/opt/kafka/log4j2.properties \
  -cp "$cp" kafka.Kafka "$conf"
