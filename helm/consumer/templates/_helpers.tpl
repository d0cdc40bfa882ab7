{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "consumer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release name when it already holds the chart name. */}}
{{- define "consumer.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "consumer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "consumer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "consumer.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "consumer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "consumer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "consumer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "consumer.image" -}}
{{- if eq .Values.image.tag "latest" }}
{{- fail "image.tag: pin a version (empty means the chart's appVersion), not latest" }}
{{- end }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
StatefulSet under static membership (stable pod names) or with persistence
(a claim per pod), else Deployment.
*/}}
{{- define "consumer.kind" -}}
{{- if or .Values.staticMembership.enabled .Values.persistence.enabled }}StatefulSet{{ else }}Deployment{{ end }}
{{- end }}

{{/* The image's working directory (Dockerfile WORKDIR): where the claim is mounted. */}}
{{- define "consumer.dataDir" -}}/var/lib/consumer{{- end }}

{{- define "consumer.secretName" -}}
{{- default (include "consumer.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* Upper bound for autoscalers: more members than partitions sit idle. */}}
{{- define "consumer.maxReplicas" -}}
{{- default .Values.kafka.partitions .max }}
{{- end }}

{{/*
Seconds Kubernetes waits after SIGTERM before its SIGKILL: every deadline on
the service's stop path, in the order they run, from the values the ConfigMap
hands the service, so raising any of them moves the grace period with it.
  shutdownTimeout           the drain (Engine._shutdown, consumer/engine/engine.py)
  config.commit_timeout     the final commit (Committer, its asyncio.timeout)
  5                         closing the processor when the drain and the commit
                            used the whole deadline (Engine._shutdown: PROCESSOR_CLOSE_MIN)
  config.dlq_send_timeout   the dead-letter producer's stop, which still runs when
                            that close is cut short (Pipeline.close, consumer/pipeline/processor.py)
  sink close                likewise the sink's own close (consumer.sinkCloseSeconds)
  config.commit_timeout     leaving the group: the Kafka consumer's stop (Engine.close)
  margin                    the process exiting (terminationGraceMarginSeconds)
tests/chart/test_render.py checks this sum against the service's constants.
*/}}
{{- define "consumer.terminationGracePeriodSeconds" -}}
{{- $commit := include "consumer.configSeconds" (list . "commit_timeout") | float64 }}
{{- $dlq := include "consumer.configSeconds" (list . "dlq_send_timeout") | float64 }}
{{- $close := include "consumer.sinkCloseSeconds" . | float64 }}
{{- $stop := addf .Values.shutdownTimeout $commit 5 $dlq $close $commit }}
{{- add (ceil $stop | int) .Values.terminationGraceMarginSeconds }}
{{- end }}

{{/* A deadline under `config` the grace period is derived from: it must be set. */}}
{{- define "consumer.configSeconds" -}}
{{- $root := index . 0 }}{{- $key := index . 1 }}
{{- $value := index $root.Values.config $key }}
{{- if not $value }}
{{- fail (printf "config.%s: terminationGracePeriodSeconds is derived from it, so keep it set (e.g. --set config.%s=10)" $key $key) }}
{{- end }}
{{- $value }}
{{- end }}

{{/*
How long closing the sink may take after the processor's close was cut short:
the PostgreSQL pool's close (PostgresSink.close: CLOSE_TIMEOUT) or the Kafka
sink's producer stop (KafkaSink: SEND_TIMEOUT); the others close at once.
Unknown under existingSecret: the longest.
*/}}
{{- define "consumer.sinkCloseSeconds" -}}
{{- $url := .Values.sink.url }}
{{- if or .Values.existingSecret (hasPrefix "kafka:" $url) }}30
{{- else if hasPrefix "postgres" $url }}10
{{- else }}0
{{- end }}
{{- end }}

{{- define "consumer.sqliteSink" -}}
{{- if and (not .Values.existingSecret) (hasPrefix "sqlite:" .Values.sink.url) }}true{{ end }}
{{- end }}

{{/*
The sink URL, or the install refused: without it the service would fall back
to SQLite in the container's own filesystem. With existingSecret the Secret
must hold it (checked when the Secret is there to read, not by `helm
template`; the pod's env names the key too, so the kubelet will not start a
pod without it), and SQLite in it needs persistence as in sink.url.
*/}}
{{- define "consumer.checkSink" -}}
{{- if .Values.existingSecret }}
{{- $secret := lookup "v1" "Secret" .Release.Namespace .Values.existingSecret }}
{{- if $secret }}
{{- $url := get (default dict $secret.data) "CONSUMER_SINK_URL" }}
{{- if not $url }}
{{- fail (printf "existingSecret: Secret %s has no key CONSUMER_SINK_URL; add one, e.g. kubectl create secret generic %s --from-literal=CONSUMER_SINK_URL=postgresql://user:pass@postgres/events" .Values.existingSecret .Values.existingSecret) }}
{{- end }}
{{- include "consumer.checkSqlite" (list . (b64dec $url) "existingSecret's CONSUMER_SINK_URL") }}
{{- end }}
{{- else if not .Values.sink.url }}
{{- fail "sink.url: say where events are stored, e.g. --set sink.url=postgresql://user:pass@postgres/events (or existingSecret, a Secret with CONSUMER_SINK_URL; to try the chart, --set persistence.enabled=true --set sink.url=sqlite:///consumer.db)" }}
{{- else }}
{{- include "consumer.checkSqlite" (list . .Values.sink.url "sink.url") }}
{{- end }}
{{- end }}

{{/*
SQLite only on a claim: on the container's filesystem or an emptyDir its rows
would go with the pod while their offsets stay committed.
*/}}
{{- define "consumer.checkSqlite" -}}
{{- $root := index . 0 }}{{- $url := index . 1 }}{{- $what := index . 2 }}
{{- $dir := include "consumer.dataDir" $root }}
{{- if hasPrefix "sqlite:" $url }}
{{- if not $root.Values.persistence.enabled }}
{{- fail (printf "%s: SQLite keeps its rows in the pod, lost with it; set persistence.enabled=true for a volume per pod (e.g. --set persistence.enabled=true --set sink.url=sqlite:///consumer.db), or use postgresql://..." $what) }}
{{- end }}
{{- $path := trimPrefix "sqlite:///" $url }}
{{- if and (hasPrefix "/" $path) (not (hasPrefix (printf "%s/" $dir) $path)) }}
{{- fail (printf "%s: the SQLite file must be on the claim at %s, e.g. sqlite:///consumer.db (relative to it) or sqlite:///%s/consumer.db" $what $dir $dir) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A setting as an env string: lists comma-joined, whole numbers without the
exponent Go prints for large floats (values files parse numbers as float64).
*/}}
{{- define "consumer.envValue" -}}
{{- if kindIs "slice" . }}{{ join "," . }}
{{- else if and (kindIs "float64" .) (eq . (floor .)) }}{{ int64 . }}
{{- else }}{{ toString . }}
{{- end }}
{{- end }}

{{- define "consumer.sasl" -}}
{{- if hasPrefix "SASL_" .Values.kafka.security.protocol }}true{{ end }}
{{- end }}

{{- define "consumer.tls" -}}
{{- if has .Values.kafka.security.protocol (list "SSL" "SASL_SSL") }}true{{ end }}
{{- end }}

{{/* Where the Kafka TLS and SASL password Secrets are mounted. */}}
{{- define "consumer.tlsDir" -}}/etc/consumer/kafka-tls{{- end }}
{{- define "consumer.saslDir" -}}/etc/consumer/kafka-sasl{{- end }}
{{/* Where the schema registry's password and CA Secrets are mounted. */}}
{{- define "consumer.registrySecretDir" -}}/etc/consumer/registry-password{{- end }}
{{- define "consumer.registryCaDir" -}}/etc/consumer/registry-ca{{- end }}

{{/*
Labels of the `helm test` pod: the release's, under a name of its own, so the
Service (which selects name and instance) never routes to it.
*/}}
{{- define "consumer.testSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-test" (include "consumer.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "consumer.testLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "consumer.testSelectorLabels" . }}
app.kubernetes.io/component: test
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
