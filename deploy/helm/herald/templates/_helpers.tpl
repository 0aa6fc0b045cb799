{{/* Names and labels shared by every manifest. */}}

{{- define "herald.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "herald.fullname" -}}
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

{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: {{ include "herald.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "herald.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "herald.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Secret holding the API key: the user's, or the chart's. */}}
{{- define "herald.apiKeySecret" -}}
{{- .Values.apiKey.existingSecret | default (include "herald.fullname" .) }}
{{- end }}

{{- define "herald.redisSecret" -}}
{{- .Values.redis.existingSecret | default (include "herald.fullname" .) }}
{{- end }}

{{/* Whether the chart creates a Secret, and refusals of values that
     cannot work. */}}
{{- define "herald.validate" -}}
{{- if and (not .Values.apiKey.value) (not .Values.apiKey.existingSecret) }}
{{- fail "apiKey.value or apiKey.existingSecret is required: without a publisher API key, nothing outside the pod could publish" }}
{{- end }}
{{- if and (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) (not .Values.redis.url) (not .Values.redis.existingSecret) }}
{{- fail "redis.url or redis.existingSecret is required with more than one node: without Redis each node would only deliver its own publishes" }}
{{- end }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int .Values.shutdownTimeoutSeconds) }}
{{- fail "terminationGracePeriodSeconds must exceed shutdownTimeoutSeconds, or the kubelet kills a draining node" }}
{{- end }}
{{- if ge (int .Values.drainDelaySeconds) (int .Values.shutdownTimeoutSeconds) }}
{{- fail "drainDelaySeconds must be less than shutdownTimeoutSeconds, which includes it" }}
{{- end }}
{{- end }}
