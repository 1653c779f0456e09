{{/* Names, labels and the per-service environment. */}}

{{- define "advocacy.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The name of one service's objects: <fullname>-<service>[-<component>]. Call with (list $ service [component]). */}}
{{- define "advocacy.name" -}}
{{- $root := index . 0 -}}
{{- $parts := append (list (include "advocacy.fullname" $root)) (index . 1) -}}
{{- if gt (len .) 2 }}{{ $parts = append $parts (index . 2) }}{{ end -}}
{{- join "-" $parts | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "advocacy.metaLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: advocacy
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "advocacy.commonLabels" -}}
{{ include "advocacy.metaLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of one component. Call with (list $ service component). */}}
{{- define "advocacy.selectorLabels" -}}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/name: {{ index . 1 }}
app.kubernetes.io/component: {{ index . 2 }}
{{- end -}}

{{- define "advocacy.labels" -}}
{{ include "advocacy.metaLabels" (index . 0) }}
{{ include "advocacy.selectorLabels" . }}
{{- end -}}

{{- define "advocacy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "advocacy.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "advocacy.image" -}}
{{- $root := index . 0 -}}
{{- printf "%s/advocacy-%s:%s" $root.Values.image.registry (index . 1) (default $root.Chart.AppVersion $root.Values.image.tag) -}}
{{- end -}}

{{- define "advocacy.kafkaCluster" -}}
{{- default .Values.kafka.strimzi.name .Values.kafka.topics.cluster -}}
{{- end -}}

{{- define "advocacy.bootstrapServers" -}}
{{- if .Values.kafka.bootstrapServers -}}
{{- .Values.kafka.bootstrapServers -}}
{{- else if .Values.kafka.strimzi.enabled -}}
{{- printf "%s-kafka-bootstrap:9092" .Values.kafka.strimzi.name -}}
{{- else -}}
{{- fail "kafka.bootstrapServers is required when kafka.strimzi.enabled is false" -}}
{{- end -}}
{{- end -}}

{{/* A setting's value as the service reads it from the environment: lists and maps as JSON. */}}
{{- define "advocacy.envValue" -}}
{{- if or (kindIs "slice" .) (kindIs "map" .) -}}
{{- toJson . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/* Environment prefix of a service (its settings' env_prefix). */}}
{{- define "advocacy.prefix" -}}
{{- printf "%s_" (upper .) -}}
{{- end -}}

{{/* Pod-level fields shared by api and worker. Call with (list $ service component). */}}
{{- define "advocacy.podCommon" -}}
{{- $root := index . 0 -}}
serviceAccountName: {{ include "advocacy.serviceAccountName" $root }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: tmp
    emptyDir: {sizeLimit: 64Mi}
{{- end -}}

{{/* Container fields shared by api and worker. Call with (list $ service component). */}}
{{- define "advocacy.containerCommon" -}}
{{- $root := index . 0 -}}
{{- $service := index . 1 -}}
image: {{ include "advocacy.image" (list $root $service) }}
imagePullPolicy: {{ $root.Values.image.pullPolicy }}
command: [{{ printf "%s-%s" $service (index . 2) | quote }}]
envFrom:
  - configMapRef:
      name: {{ include "advocacy.name" (list $root $service) }}
  - secretRef:
      name: {{ default (include "advocacy.name" (list $root $service)) $root.Values.existingSecret }}
securityContext:
  {{- toYaml $root.Values.securityContext | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- end -}}

{{/* The HorizontalPodAutoscaler and PodDisruptionBudget of one Deployment. Call with (list $ service component spec). */}}
{{- define "advocacy.scaling" -}}
{{- $root := index . 0 -}}
{{- $service := index . 1 -}}
{{- $component := index . 2 -}}
{{- $spec := index . 3 -}}
{{- $name := include "advocacy.name" (list $root $service $component) }}
{{- if $spec.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  labels:
    {{- include "advocacy.labels" (list $root $service $component) | nindent 4 }}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: {{ $name }}}
  minReplicas: {{ $spec.autoscaling.minReplicas }}
  maxReplicas: {{ $spec.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target: {type: Utilization, averageUtilization: {{ $spec.autoscaling.targetCPUUtilizationPercentage }}}
{{- end }}
{{- if $spec.podDisruptionBudget.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  labels:
    {{- include "advocacy.labels" (list $root $service $component) | nindent 4 }}
spec:
  {{- if hasKey $spec.podDisruptionBudget "maxUnavailable" }}
  maxUnavailable: {{ $spec.podDisruptionBudget.maxUnavailable }}
  {{- else }}
  minAvailable: {{ $spec.podDisruptionBudget.minAvailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "advocacy.selectorLabels" (list $root $service $component) | nindent 6 }}
{{- end }}
{{- end -}}
