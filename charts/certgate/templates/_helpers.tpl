{{/*
Named templates. Every certgate.* template that renders pod parts takes a dict:
  values: the certgate values (this chart's .Values, or .Values.certgate in a parent chart)
An application chart adds certgate to its pod with:

  initContainers:
    {{- include "certgate.initContainers" (dict "values" .Values.certgate) | nindent 8 }}
  containers:
    - name: app
      volumeMounts:
        {{- include "certgate.workloadVolumeMounts" (dict "values" .Values.certgate) | nindent 12 }}
    {{- include "certgate.containers" (dict "values" .Values.certgate) | nindent 8 }}
  volumes:
    {{- include "certgate.volumes" (dict "values" .Values.certgate) | nindent 8 }}

(see README.md). certgate.sidecar and certgate.preflight render the single containers.
*/}}

{{- define "certgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "certgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "certgate.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "certgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "certgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Volume names, shared by the containers and the volumes. */}}
{{- define "certgate.sourceVolume" -}}certgate-source{{- end }}
{{- define "certgate.publishVolume" -}}certgate-publish{{- end }}
{{- define "certgate.fleetTokenVolume" -}}certgate-fleet-token{{- end }}
{{- define "certgate.fleetCaVolume" -}}certgate-fleet-ca{{- end }}
{{- define "certgate.fleetTokenDir" -}}/var/run/secrets/certgate-fleet-token{{- end }}
{{- define "certgate.fleetCaDir" -}}/var/run/secrets/certgate-fleet-ca{{- end }}
{{- define "certgate.gateReleaseVolume" -}}certgate-gate-release{{- end }}
{{- define "certgate.gateReleaseDir" -}}/var/run/certgate-gate-release{{- end }}

{{/* The gate is on: gate.mode hold or observe (a bare YAML off is false). */}}
{{- define "certgate.gateOn" -}}
{{- if has (toString .values.gate.mode) (list "hold" "observe") }}true{{ end }}
{{- end }}

{{/* The fleet gate's and its query API's environment (`certgate run` flags --gate*,
--prometheus-*, --fleet-*), each only when set. */}}
{{- define "certgate.gateEnv" -}}
{{- $g := .values.gate -}}
{{- $f := .values.fleet -}}
{{- if include "certgate.gateOn" . }}
- name: CERTGATE_GATE
  value: {{ $g.mode | quote }}
{{- with $g.verifiers }}
- name: CERTGATE_GATE_VERIFIERS
  value: {{ join "\n" . | quote }}
{{- end }}
{{- with $g.presenters }}
- name: CERTGATE_GATE_PRESENTERS
  value: {{ join "\n" . | quote }}
{{- end }}
{{- if not (kindIs "invalid" $g.minVerifiers) }}
- name: CERTGATE_GATE_MIN_VERIFIERS
  value: {{ $g.minVerifiers | int | toString | quote }}
{{- end }}
{{- with $g.expectedVerifiers }}
- name: CERTGATE_GATE_EXPECTED_VERIFIERS
  value: {{ . | quote }}
{{- end }}
{{- with $g.unknownVerifiers }}
- name: CERTGATE_GATE_UNKNOWN_VERIFIERS
  value: {{ . | quote }}
{{- end }}
{{- with $g.stableFor }}
- name: CERTGATE_GATE_STABLE_FOR
  value: {{ . | quote }}
{{- end }}
{{- with $g.releaseBeforeExpiry }}
- name: CERTGATE_GATE_RELEASE_BEFORE_EXPIRY
  value: {{ . | quote }}
{{- end }}
{{- if $g.releaseConfigMap.name }}
- name: CERTGATE_GATE_RELEASE_FILE
  value: {{ printf "%s/%s" (include "certgate.gateReleaseDir" .) $g.releaseConfigMap.key | quote }}
{{- end }}
{{- end }}
{{- with $f.prometheusUrl }}
- name: CERTGATE_PROMETHEUS_URL
  value: {{ . | quote }}
{{- end }}
{{- with $f.headers }}
- name: CERTGATE_PROMETHEUS_HEADERS
  value: {{ join "\n" . | quote }}
{{- end }}
{{- if $f.bearerTokenSecret.name }}
- name: CERTGATE_PROMETHEUS_BEARER_TOKEN_FILE
  value: {{ printf "%s/%s" (include "certgate.fleetTokenDir" .) $f.bearerTokenSecret.key | quote }}
{{- else if $f.bearerTokenFile }}
- name: CERTGATE_PROMETHEUS_BEARER_TOKEN_FILE
  value: {{ $f.bearerTokenFile | quote }}
{{- end }}
{{- if $f.caConfigMap.name }}
- name: CERTGATE_PROMETHEUS_CA_FILE
  value: {{ printf "%s/%s" (include "certgate.fleetCaDir" .) $f.caConfigMap.key | quote }}
{{- else if $f.caFile }}
- name: CERTGATE_PROMETHEUS_CA_FILE
  value: {{ $f.caFile | quote }}
{{- end }}
{{- with $f.pollInterval }}
- name: CERTGATE_FLEET_POLL_INTERVAL
  value: {{ . | quote }}
{{- end }}
{{- with $f.queryTimeout }}
- name: CERTGATE_FLEET_QUERY_TIMEOUT
  value: {{ . | quote }}
{{- end }}
{{- with $f.job }}
- name: CERTGATE_FLEET_JOB
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/* The environment both `run` and `check` read (CERTGATE_* fallbacks of their flags). */}}
{{- define "certgate.env" -}}
{{- $v := .values -}}
- name: CERTGATE_SET_NAME
  value: {{ $v.set.name | quote }}
- name: CERTGATE_CERT
  value: {{ printf "%s/%s" $v.source.mountPath $v.source.cert | quote }}
- name: CERTGATE_KEY
  value: {{ printf "%s/%s" $v.source.mountPath $v.source.key | quote }}
- name: CERTGATE_TRUST
  value: {{ printf "%s/%s" $v.source.mountPath $v.source.trust | quote }}
{{- with $v.set.names }}
- name: CERTGATE_NAMES
  value: {{ join "," . | quote }}
{{- end }}
- name: CERTGATE_USAGE
  value: {{ $v.set.usage | quote }}
{{- with $v.set.minRemaining }}
- name: CERTGATE_MIN_REMAINING
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/* The sidecar container (one list item). In native mode it carries restartPolicy: Always
and belongs under initContainers; in classic mode under containers. */}}
{{- define "certgate.sidecar" -}}
{{- $v := .values -}}
- name: certgate
  image: {{ printf "%s:%s" $v.image.repository $v.image.tag | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if eq $v.sidecar.mode "native" }}
  restartPolicy: Always
  {{- end }}
  args:
    - run
    {{- range $v.sidecar.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  env:
    # The pod's own namespace and name: the gate's selectors expand $POD_NAMESPACE.
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    {{- include "certgate.env" . | nindent 4 }}
    - name: CERTGATE_PUBLISH_DIR
      value: {{ $v.publish.mountPath | quote }}
    - name: CERTGATE_KEY_MODE
      value: {{ $v.publish.keyMode | quote }}
    - name: CERTGATE_WARN_BEFORE
      value: {{ $v.set.warnBefore | quote }}
    - name: CERTGATE_FAIL_READY_BEFORE
      value: {{ $v.set.failReadyBefore | quote }}
    {{- with $v.set.verifyAddr }}
    - name: CERTGATE_VERIFY_ADDR
      value: {{ . | quote }}
    - name: CERTGATE_VERIFY_TIMEOUT
      value: {{ $v.set.verifyTimeout | quote }}
    {{- end }}
    {{- with $v.set.reload.signal }}
    - name: CERTGATE_RELOAD_SIGNAL
      value: {{ . | quote }}
    {{- end }}
    {{- with $v.set.reload.processName }}
    - name: CERTGATE_RELOAD_PROCESS
      value: {{ . | quote }}
    {{- end }}
    {{- with $v.set.reload.pidFile }}
    - name: CERTGATE_RELOAD_PID_FILE
      value: {{ . | quote }}
    {{- end }}
    {{- with $v.set.reload.url }}
    - name: CERTGATE_RELOAD_URL
      value: {{ . | quote }}
    {{- end }}
    - name: CERTGATE_LISTEN
      value: {{ printf "0.0.0.0:%v" $v.sidecar.port | quote }}
    - name: CERTGATE_LOG_FORMAT
      value: {{ $v.sidecar.logFormat | quote }}
    {{- include "certgate.gateEnv" . | nindent 4 }}
    {{- with $v.sidecar.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: certgate-admin
      containerPort: {{ $v.sidecar.port }}
      protocol: TCP
  # Startup and readiness: valid material is live. In native mode the workload starts only
  # once the startup probe passed. Liveness: the event loop turns (never the certificate).
  startupProbe:
    httpGet:
      path: /readyz
      port: certgate-admin
    periodSeconds: 2
    failureThreshold: 90
  readinessProbe:
    httpGet:
      path: /readyz
      port: certgate-admin
    periodSeconds: 10
  livenessProbe:
    httpGet:
      path: /healthz
      port: certgate-admin
    periodSeconds: 10
    failureThreshold: 6
  resources:
    {{- toYaml $v.sidecar.resources | nindent 4 }}
  securityContext:
    {{- include "certgate.securityContext" . | nindent 4 }}
  volumeMounts:
    - name: {{ include "certgate.sourceVolume" . }}
      mountPath: {{ $v.source.mountPath | quote }}
      readOnly: true
    - name: {{ include "certgate.publishVolume" . }}
      mountPath: {{ $v.publish.mountPath | quote }}
    {{- if $v.fleet.bearerTokenSecret.name }}
    - name: {{ include "certgate.fleetTokenVolume" . }}
      mountPath: {{ include "certgate.fleetTokenDir" . | quote }}
      readOnly: true
    {{- end }}
    {{- if $v.fleet.caConfigMap.name }}
    - name: {{ include "certgate.fleetCaVolume" . }}
      mountPath: {{ include "certgate.fleetCaDir" . | quote }}
      readOnly: true
    {{- end }}
    {{- if and (include "certgate.gateOn" .) $v.gate.releaseConfigMap.name }}
    - name: {{ include "certgate.gateReleaseVolume" . }}
      mountPath: {{ include "certgate.gateReleaseDir" . | quote }}
      readOnly: true
    {{- end }}
{{- end }}

{{- define "certgate.securityContext" -}}
runAsNonRoot: true
runAsUser: {{ .values.sidecar.runAsUser }}
runAsGroup: {{ .values.sidecar.runAsGroup }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The pre-flight init container: `certgate check` on the source; exit 1 names the file and
the reason in the termination message. */}}
{{- define "certgate.preflight" -}}
{{- $v := .values -}}
- name: certgate-preflight
  image: {{ printf "%s:%s" $v.image.repository $v.image.tag | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args: ["check"]
  env:
    {{- include "certgate.env" . | nindent 4 }}
  terminationMessagePolicy: FallbackToLogsOnError
  resources:
    {{- toYaml $v.sidecar.resources | nindent 4 }}
  securityContext:
    {{- include "certgate.securityContext" . | nindent 4 }}
  volumeMounts:
    - name: {{ include "certgate.sourceVolume" . }}
      mountPath: {{ $v.source.mountPath | quote }}
      readOnly: true
{{- end }}

{{/* Everything certgate puts under initContainers: the pre-flight (when enabled), then the
native sidecar (in native mode). */}}
{{- define "certgate.initContainers" -}}
{{- if .values.preflight.enabled }}
{{ include "certgate.preflight" . }}
{{- end }}
{{- if eq .values.sidecar.mode "native" }}
{{ include "certgate.sidecar" . }}
{{- end }}
{{- end }}

{{/* The classic sidecar under containers (nothing in native mode). */}}
{{- define "certgate.containers" -}}
{{- if eq .values.sidecar.mode "classic" }}
{{ include "certgate.sidecar" . }}
{{- end }}
{{- end }}

{{/* The workload's read-only mount of the publish dir. */}}
{{- define "certgate.workloadVolumeMounts" -}}
- name: {{ include "certgate.publishVolume" . }}
  mountPath: {{ .values.publish.mountPath | quote }}
  readOnly: true
{{- end }}

{{/* The source volume (Secret, or any volume source) and the in-memory publish dir. */}}
{{- define "certgate.volumes" -}}
{{- $v := .values -}}
- name: {{ include "certgate.sourceVolume" . }}
  {{- if $v.source.volume }}
  {{- toYaml $v.source.volume | nindent 2 }}
  {{- else }}
  secret:
    secretName: {{ required "certgate: set source.secretName (or source.volume)" $v.source.secretName | quote }}
  {{- end }}
- name: {{ include "certgate.publishVolume" . }}
  emptyDir:
    medium: Memory
    sizeLimit: {{ $v.publish.sizeLimit | quote }}
{{- with $v.fleet.bearerTokenSecret }}
{{- if .name }}
- name: {{ include "certgate.fleetTokenVolume" $ }}
  secret:
    secretName: {{ .name | quote }}
    items:
      - key: {{ .key | quote }}
        path: {{ .key | quote }}
{{- end }}
{{- end }}
{{- with $v.fleet.caConfigMap }}
{{- if .name }}
- name: {{ include "certgate.fleetCaVolume" $ }}
  configMap:
    name: {{ .name | quote }}
    items:
      - key: {{ .key | quote }}
        path: {{ .key | quote }}
{{- end }}
{{- end }}
{{- if and (include "certgate.gateOn" .) $v.gate.releaseConfigMap.name }}
- name: {{ include "certgate.gateReleaseVolume" . }}
  configMap:
    name: {{ $v.gate.releaseConfigMap.name | quote }}
    optional: true
    items:
      - key: {{ $v.gate.releaseConfigMap.key | quote }}
        path: {{ $v.gate.releaseConfigMap.key | quote }}
{{- end }}
{{- end }}
