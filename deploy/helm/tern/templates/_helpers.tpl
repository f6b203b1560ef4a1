{{/* Names, labels and the values computed from other values. */}}

{{- define "tern.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tern.fullname" -}}
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

{{- define "tern.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tern.selectorLabels" . }}
app.kubernetes.io/version: {{ (.Values.image.tag | default .Chart.AppVersion) | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tern.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tern.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tern.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tern.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tern.configSecretName" -}}
{{- default (printf "%s-config" (include "tern.fullname" .)) .Values.configSecret.existingSecret }}
{{- end }}

{{/* Seconds ternd waits for in-flight calls after SIGTERM (--drain-timeout). */}}
{{- define "tern.drainTimeoutSeconds" -}}
{{- .Values.config.drainTimeoutSeconds | default 30 | float64 | ceil | int }}
{{- end }}

{{/*
Grace period: the preStop sleep, then the drain, then a margin for the gRPC
server's shutdown and the process exit. A value set by hand must leave room
for the first two.
*/}}
{{- define "tern.terminationGracePeriodSeconds" -}}
{{- $preStop := int .Values.lifecycle.preStopSleepSeconds }}
{{- $drain := int (include "tern.drainTimeoutSeconds" .) }}
{{- $needed := add $preStop $drain }}
{{- if .Values.lifecycle.terminationGracePeriodSeconds }}
{{- $set := int .Values.lifecycle.terminationGracePeriodSeconds }}
{{- if le $set $needed }}
{{- fail (printf "lifecycle.terminationGracePeriodSeconds (%d) must be longer than lifecycle.preStopSleepSeconds + config.drainTimeoutSeconds (%d)" $set $needed) }}
{{- end }}
{{- $set }}
{{- else }}
{{- add $needed (int .Values.lifecycle.shutdownMarginSeconds) }}
{{- end }}
{{- end }}

{{/* A model's directory: relative paths are under modelStorage.mountPath. */}}
{{- define "tern.modelPath" -}}
{{- if hasPrefix "/" .path }}{{ .path }}{{ else }}{{ printf "%s/%s" (trimSuffix "/" .mountPath) .path }}{{ end }}
{{- end }}

{{/*
ternd's config file (tern.v1.ServerConfig as JSON): config from values, the
model list with paths under the model mount, and the listen ports.
*/}}
{{- define "tern.serverConfig" -}}
{{- $config := deepCopy (omit .Values.config "listen" "models") }}
{{- $models := list }}
{{- range .Values.models }}
{{- $model := deepCopy . }}
{{- $_ := set $model "path" (include "tern.modelPath" (dict "path" .path "mountPath" $.Values.modelStorage.mountPath)) }}
{{- $models = append $models $model }}
{{- end }}
{{- $_ := set $config "models" $models }}
{{- $_ := set $config "listen" (dict "grpcPort" (int .Values.ports.grpc) "httpPort" (int .Values.ports.http)) }}
{{- toPrettyJson $config }}
{{- end }}

{{/* The model whose gauges the endpoint picker reads. */}}
{{- define "tern.inferencePool.metricsModel" -}}
{{- if .Values.inferencePool.metricsModel }}
{{- .Values.inferencePool.metricsModel }}
{{- else if eq (len .Values.models) 1 }}
{{- (index .Values.models 0).name }}
{{- else }}
{{- fail "inferencePool.metricsModel must name the model whose metrics the endpoint picker reads when models has more than one entry" }}
{{- end }}
{{- end }}

{{- define "tern.inferencePool.name" -}}
{{- default (include "tern.fullname" .) .Values.inferencePool.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tern.epp.name" -}}
{{- printf "%s-epp" (include "tern.inferencePool.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tern.epp.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tern.epp.selectorLabels" . }}
app.kubernetes.io/component: endpoint-picker
app.kubernetes.io/version: {{ .Values.inferencePool.endpointPicker.image.tag | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tern.epp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tern.name" . }}-epp
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
EndpointPickerConfig of the inference pool's endpoint picker. Engine "tern"
maps the model-server protocol's gauges to ternd's metrics of one model.
*/}}
{{- define "tern.epp.config" -}}
{{- $epp := .Values.inferencePool.endpointPicker }}
{{- $model := include "tern.inferencePool.metricsModel" . -}}
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
  - type: queue-scorer
  - type: kv-cache-utilization-scorer
  - type: passthrough-parser
  - type: metrics-data-source
    parameters:
      scheme: http
      path: /metrics
  - type: core-metrics-extractor
    parameters:
      defaultEngine: tern
      engineConfigs:
        - name: tern
          queuedRequestsSpec: 'tern_num_requests_waiting{model="{{ $model }}"}'
          runningRequestsSpec: 'tern_num_requests_running{model="{{ $model }}"}'
          kvUsageSpec: 'tern_kv_cache_usage_ratio{model="{{ $model }}"}'
          loraSpec: ""
          cacheInfoSpec: ""
dataLayer:
  sources:
    - pluginRef: metrics-data-source
      extractors:
        - pluginRef: core-metrics-extractor
parser:
  pluginRef: passthrough-parser
schedulingProfiles:
  - name: default
    plugins:
      - pluginRef: queue-scorer
        weight: {{ $epp.queueScorerWeight }}
      - pluginRef: kv-cache-utilization-scorer
        weight: {{ $epp.kvCacheScorerWeight }}
{{- end }}
