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

{{/* StatefulSet under static membership (stable pod names), else Deployment. */}}
{{- define "consumer.kind" -}}
{{- if .Values.staticMembership.enabled }}StatefulSet{{ else }}Deployment{{ end }}
{{- end }}

{{- define "consumer.secretName" -}}
{{- default (include "consumer.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* Upper bound for autoscalers: more members than partitions sit idle. */}}
{{- define "consumer.maxReplicas" -}}
{{- default .Values.kafka.partitions .max }}
{{- end }}

{{/* Seconds Kubernetes waits after SIGTERM: the drain deadline plus a margin. */}}
{{- define "consumer.terminationGracePeriodSeconds" -}}
{{- add (ceil .Values.shutdownTimeout | int) .Values.terminationGraceMarginSeconds }}
{{- end }}

{{- define "consumer.sqliteSink" -}}
{{- if and (not .Values.existingSecret) (hasPrefix "sqlite:" .Values.sink.url) }}true{{ end }}
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
