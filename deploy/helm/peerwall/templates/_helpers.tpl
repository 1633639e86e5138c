{{/*
Names and labels. The gateway templates hold two template languages: Helm renders this chart once,
at install; Liqo renders each gateway template again for every peering, with the variables .Name,
.Namespace, .ClusterID, .GatewayUID, .SecretName and .Spec of the GatewayServer/GatewayClient.
Liqo's placeholders are therefore written as Helm string literals, "{{ .Name }}" inside {{ }}.
*/}}

{{- define "peerwall.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release name, or release-chart when the release name does not contain the chart's. */}}
{{- define "peerwall.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "peerwall.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of the objects Helm creates itself. Takes a dict: root (the chart context), component. */}}
{{- define "peerwall.labels" -}}
app.kubernetes.io/name: {{ include "peerwall.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: peerwall
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "peerwall.chart" .root }}
{{- end }}

{{- define "peerwall.agentImage" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "peerwall.agentRoleName" -}}
{{- include "peerwall.fullname" . }}-agent
{{- end }}

{{- define "peerwall.gatewayRoleName" -}}
{{- include "peerwall.fullname" . }}-gateway
{{- end }}

{{/*
What Liqo's gateway objects select on, as in Liqo's liqo.selectorTemplate: Liqo finds the replicas
of a gateway by app.kubernetes.io/name and its active pod by networking.liqo.io/component and
networking.liqo.io/active. Takes a dict: root, isService.
*/}}
{{- define "peerwall.gatewaySelector" -}}
app.kubernetes.io/name: "{{"{{ .Name }}"}}"
app.kubernetes.io/instance: "{{ .root.Release.Name }}-{{"{{ .Name }}"}}"
app.kubernetes.io/component: networking
app.kubernetes.io/part-of: peerwall
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
networking.liqo.io/component: gateway
networking.liqo.io/gateway-name: "{{"{{ .Name }}"}}"
networking.liqo.io/gateway-namespace: "{{"{{ .Namespace }}"}}"
{{- if .isService }}
networking.liqo.io/active: "true"
{{- end }}
{{- end }}

{{/*
Name, namespace and labels of an object Liqo creates from a gateway template (liqo.metadataTemplate).
With one replica the pod is the active gateway from the start. With remoteClusterID, the labels also
carry liqo.io/remote-cluster-id: Liqo renders label values as strings, which is why the agent reads
the peer's cluster ID from this label (Downward API) and not from an env value that Liqo would
turn into a number when the ID is all digits. Takes a dict: root, remoteClusterID.
*/}}
{{- define "peerwall.gatewayMetadata" -}}
name: "{{"{{ .Name }}"}}"
namespace: "{{"{{ .Namespace }}"}}"
labels:
  {{- include "peerwall.gatewaySelector" (dict "root" .root) | nindent 2 }}
  helm.sh/chart: {{ include "peerwall.chart" .root }}
  app.kubernetes.io/version: {{ .root.Values.liqo.version | quote }}
  networking.liqo.io/active: "true"
  {{- if .remoteClusterID }}
  liqo.io/remote-cluster-id: "{{"{{ .ClusterID }}"}}"
  {{- end }}
{{- end }}

{{/*
The Deployment of a gateway: Liqo v1.2.0's gateway, wireguard and geneve containers, unchanged
except for their images and values (.Values.liqo), plus the peerwall agent. All containers of a
pod share its network namespace, so the agent sees the tunnel interface that the wireguard
container creates. Takes a dict: root, mode ("server" or "client").

Liqo renders every string of the spec with text/template and turns a result that is a whole
number into an integer: so no string here may be all digits (the agent's options are written
--flag=value, never "--flag", "10").
*/}}
{{- define "peerwall.gatewayDeployment" -}}
{{- $v := .root.Values -}}
{{- $liqo := $v.liqo -}}
metadata:
  {{- include "peerwall.gatewayMetadata" (dict "root" .root) | nindent 2 }}
spec:
  replicas: 1
  strategy:
    type: Recreate
  selector:
    matchLabels:
      {{- include "peerwall.gatewaySelector" (dict "root" .root) | nindent 6 }}
  template:
    metadata:
      {{- include "peerwall.gatewayMetadata" (dict "root" .root "remoteClusterID" true) | nindent 6 }}
    spec:
      {{- /* Said, though a Deployment allows nothing else: a dead agent is restarted by the
      kubelet (the kernel keeps its last rules meanwhile), with the kubelet's backoff. */}}
      restartPolicy: Always
      serviceAccount: "{{"{{ .Name }}"}}"
      serviceAccountName: "{{"{{ .Name }}"}}"
      {{- /* Init containers finish before any container starts: the tunnel that the wireguard
      container creates never exists without a table. */}}
      initContainers:
      {{- include "peerwall.failClosedContainer" .root | nindent 6 }}
      containers:
      - name: gateway
        image: {{ $liqo.images.gateway }}:{{ $liqo.version }}
        imagePullPolicy: {{ $liqo.pullPolicy }}
        args:
        - --name={{"{{ .Name }}"}}
        - --namespace={{"{{ .Namespace }}"}}
        - --remote-cluster-id={{"{{ .ClusterID }}"}}
        - --node-name=$(NODE_NAME)
        - --pod-name=$(POD_NAME)
        - --gateway-uid={{"{{ .GatewayUID }}"}}
        - --mode={{ .mode }}
        - --container-name=gateway
        - --concurrent-containers-names=wireguard,geneve
        {{- with $liqo.globalAnnotations }}
        - --global-annotations={{ include "peerwall.keyValues" . }}
        {{- end }}
        {{- with $liqo.globalLabels }}
        - --global-labels={{ include "peerwall.keyValues" . }}
        {{- end }}
        {{- if $liqo.metrics }}
        - --metrics-address=:8082
        {{- end }}
        - --health-probe-bind-address=:8083
        - --ping-enabled=true
        - --ping-loss-threshold=5
        - --ping-interval=2s
        - --ping-update-status-interval=10s
        - --leader-election=false
        - --enable-nft-monitor={{ $liqo.nftablesMonitor }}
        - --enable-route-monitor=true
        volumeMounts:
        - name: ipc
          mountPath: /ipc
        ports:
        {{- if $liqo.metrics }}
        - containerPort: 8082
          name: gw-metrics
        {{- end }}
        - containerPort: 8083
          name: healthz
        env:
        - name: NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        securityContext:
          privileged: true
          capabilities:
            add:
            - NET_ADMIN
            - NET_RAW
      - name: wireguard
        image: {{ $liqo.images.wireguard }}:{{ $liqo.version }}
        imagePullPolicy: {{ $liqo.pullPolicy }}
        args:
        - --name={{"{{ .Name }}"}}
        - --namespace={{"{{ .Namespace }}"}}
        - --remote-cluster-id={{"{{ .ClusterID }}"}}
        - --gateway-uid={{"{{ .GatewayUID }}"}}
        - --mode={{ .mode }}
        - --container-name=wireguard
        - --mtu={{"{{ .Spec.MTU }}"}}
        {{- if eq .mode "server" }}
        - --listen-port={{"{{ .Spec.Endpoint.Port }}"}}
        {{- else }}
        - --endpoint-address={{"{{ index .Spec.Endpoint.Addresses 0 }}"}}
        - --endpoint-port={{"{{ .Spec.Endpoint.Port }}"}}
        {{- end }}
        {{- if $liqo.metrics }}
        - --metrics-address=:8084
        {{- end }}
        - --health-probe-bind-address=:8085
        - --leader-election=false
        - --implementation={{ $liqo.wireguard.implementation }}
        {{- if eq .mode "server" }}
        - --preserve-client-endpoint={{ $liqo.wireguard.preserveClientEndpoint }}
        {{- end }}
        ports:
        {{- if $liqo.metrics }}
        - containerPort: 8084
          name: wg-metrics
        {{- end }}
        - containerPort: 8085
          name: healthz
        securityContext:
          capabilities:
            add:
            - NET_ADMIN
            - NET_RAW
          {{- if eq $liqo.wireguard.implementation "userspace" }}
          privileged: true
          {{- end }}
        volumeMounts:
        - name: ipc
          mountPath: /ipc
        - name: wireguard-config
          mountPath: /etc/wireguard/keys
      - name: geneve
        image: {{ $liqo.images.geneve }}:{{ $liqo.version }}
        imagePullPolicy: {{ $liqo.pullPolicy }}
        args:
        - --name={{"{{ .Name }}"}}
        - --namespace={{"{{ .Namespace }}"}}
        - --remote-cluster-id={{"{{ .ClusterID }}"}}
        - --node-name=$(NODE_NAME)
        - --pod-name=$(POD_NAME)
        - --gateway-uid={{"{{ .GatewayUID }}"}}
        {{- /* Liqo's client template too runs geneve with --mode=server. */}}
        - --mode=server
        - --container-name=geneve
        - --geneve-port={{ $liqo.genevePort }}
        {{- if $liqo.metrics }}
        - --metrics-address=:8086
        {{- end }}
        - --health-probe-bind-address=:8087
        - --leader-election=false
        volumeMounts:
        - name: ipc
          mountPath: /ipc
        ports:
        {{- if $liqo.metrics }}
        - containerPort: 8086
          name: gv-metrics
        {{- end }}
        - containerPort: 8087
          name: healthz
        env:
        - name: NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        securityContext:
          capabilities:
            add:
            - NET_ADMIN
            - NET_RAW
      {{- include "peerwall.agentContainer" .root | nindent 6 }}
      volumes:
      - name: wireguard-config
        secret:
          secretName: "{{"{{ .SecretName }}"}}"
      - name: ipc
        emptyDir: {}
      - name: peerwall-tmp
        emptyDir:
          medium: Memory
          sizeLimit: 16Mi
{{- end }}

{{/* A map as k1=v1,k2=v2 (keys sorted), as Liqo's liqo.concatenateMap writes it. */}}
{{- define "peerwall.keyValues" -}}
{{- $pairs := list -}}
{{- range $k, $v := . -}}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end }}

{{/*
Before the gateway's containers start, in the pod's network namespace: a fail-closed peerwall table
(every tunnel interface dropped), so the tunnel never forwards before the agent has the desired
state. Same image and privileges as the agent; it exits at once.
*/}}
{{- define "peerwall.failClosedContainer" -}}
- name: peerwall-fail-closed
  image: {{ include "peerwall.agentImage" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
  - agent
  - --source=kubernetes
  - --tunnel-pattern={{ .Values.agent.tunnelPattern }}
  - --fail-closed-only
  {{- include "peerwall.agentSecurity" . | nindent 2 }}
{{- end }}

{{- define "peerwall.agentSecurity" -}}
securityContext:
  runAsUser: 0
  privileged: false
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop:
    - ALL
    add:
    - NET_ADMIN
  seccompProfile:
    type: RuntimeDefault
volumeMounts:
- name: peerwall-tmp
  mountPath: /tmp
{{- end }}

{{/*
The peerwall agent. Its command line is the agent's contract; PEERWALL_PEER is the remote cluster
ID that Liqo wrote into the pod's labels. Only NET_ADMIN (nftables, conntrack), everything else
dropped, a read-only root filesystem (a small in-memory /tmp). It runs as uid 0 because Kubernetes
grants added capabilities only to root: a non-root process would need file capabilities, which
allowPrivilegeEscalation: false (no_new_privs) rules out.
*/}}
{{- define "peerwall.agentContainer" -}}
{{- $a := .Values.agent -}}
- name: peerwall
  image: {{ include "peerwall.agentImage" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
  - agent
  - --source=kubernetes
  - --peer=$(PEERWALL_PEER)
  - --set=networking.securityMode={{ .Values.networking.securityMode }}
  - --set=networking.securityAudit={{ .Values.networking.securityAudit | default false }}
  - --tunnel-pattern={{ $a.tunnelPattern }}
  - --resync-interval={{ $a.resyncInterval }}
  - --metrics-address=$(POD_IP):{{ $a.metricsPort }}
  - --log-level={{ $a.logLevel }}
  - --liqo-namespace={{ .Values.liqo.namespace }}
  env:
  - name: PEERWALL_PEER
    valueFrom:
      fieldRef:
        fieldPath: metadata.labels['liqo.io/remote-cluster-id']
  - name: POD_NAMESPACE
    valueFrom:
      fieldRef:
        fieldPath: metadata.namespace
  # The endpoint listens on the pod's address only (not on the tunnel's, nor on every address of
  # the gateway's network namespace); the kubelet's probes use that address.
  - name: POD_IP
    valueFrom:
      fieldRef:
        fieldPath: status.podIP
  ports:
  - containerPort: {{ $a.metricsPort }}
    name: pw-metrics
    protocol: TCP
  {{- /* /healthz fails once the loop has not run for 5 s (a stopped or hung agent): the
  kubelet restarts it after 2 failed probes 5 s apart. The startup probe gives the first list
  of a large cluster time, without loosening the liveness probe afterwards. */}}
  startupProbe:
    httpGet:
      path: /healthz
      port: pw-metrics
    periodSeconds: 1
    failureThreshold: 60
  livenessProbe:
    httpGet:
      path: /healthz
      port: pw-metrics
    periodSeconds: 5
    timeoutSeconds: 2
    failureThreshold: 2
  readinessProbe:
    httpGet:
      path: /readyz
      port: pw-metrics
    periodSeconds: 5
    failureThreshold: 2
  {{- with $a.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- include "peerwall.agentSecurity" . | nindent 2 }}
{{- end }}
