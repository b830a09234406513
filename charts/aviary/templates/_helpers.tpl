{{/* The release's name, unless it already says aviary. */}}
{{- define "aviary.fullname" -}}
{{- if contains "aviary" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-aviary" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "aviary.labels" -}}
app.kubernetes.io/name: aviary
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "aviary.controllerSelector" -}}
app.kubernetes.io/name: aviary
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "aviary.loadtesterSelector" -}}
app.kubernetes.io/name: aviary
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: loadtester
{{- end -}}

{{- define "aviary.serviceAccountName" -}}
{{- default (include "aviary.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "aviary.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Where Canaries are watched in the namespaced mode. */}}
{{- define "aviary.watchNamespace" -}}
{{- default .Release.Namespace .Values.rbac.watchNamespace -}}
{{- end -}}

{{/* The container securityContext both Deployments share. */}}
{{- define "aviary.containerSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
