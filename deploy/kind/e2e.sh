#!/usr/bin/env bash
# End-to-end check of the kustomize base on a kind cluster: builds the image, loads it into
# kind, applies deploy/kubernetes (without the Prometheus Operator objects, with a fixed
# --publish-address since kind has no load balancer), runs a backend and a client pod, and
# checks routing, Ingress status and Warning Events.
#
#   deploy/kind/e2e.sh            # create the cluster, run, delete the cluster
#   KEEP_CLUSTER=1 deploy/kind/e2e.sh   # keep it (deploy/kind/chaos.sh uses it)
#
# Needs docker, kind, kubectl (>= 1.30) and what deploy/image/build.sh needs. It cannot run on a
# machine without Docker (docs/operations.md).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cluster="${CLUSTER:-sluice-e2e}"
tag="${TAG:-e2e}"
publish="203.0.113.10"
ns=e2e
ctx="kind-$cluster"
kc() { kubectl --context "$ctx" "$@"; }
step() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}
# Retries "$@" every 2 s for up to $1 seconds.
eventually() {
    local timeout="$1"
    shift
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 2
    done
}

for tool in docker kind kubectl; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done

step "image sluice:$tag"
if [ "${BUILD_WITH_DOCKER:-0}" = 1 ]; then
    docker build -t "sluice:$tag" "$root"
else
    TAG="$tag" "$root/deploy/image/build.sh" --no-run --archive
fi

if ! kind get clusters | grep -qx "$cluster"; then
    step "kind cluster $cluster"
    kind create cluster --name "$cluster" --config "$root/deploy/kind/cluster.yaml" --wait 120s
fi
if [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    trap 'kind delete cluster --name "$cluster"' EXIT
fi
if [ "${BUILD_WITH_DOCKER:-0}" = 1 ]; then
    kind load docker-image "sluice:$tag" --name "$cluster"
else
    kind load image-archive "$root/target/image/sluice.tar" --name "$cluster"
fi

step "apply the kustomize base"
overlay="$(mktemp -d)"
cp -r "$root/deploy/kubernetes" "$overlay/base"
cat >"$overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [base]
images:
  - name: sluice
    newTag: "$tag"
patches:
  # No Prometheus Operator in kind.
  - patch: |-
      \$patch: delete
      apiVersion: monitoring.coreos.com/v1
      kind: ServiceMonitor
      metadata: {name: sluice, namespace: sluice-system}
  - patch: |-
      \$patch: delete
      apiVersion: monitoring.coreos.com/v1
      kind: PrometheusRule
      metadata: {name: sluice, namespace: sluice-system}
  # No load balancer in kind: publish a fixed address instead of the Service's.
  - target: {kind: Deployment, name: sluice}
    patch: |-
      - op: test
        path: /spec/template/spec/containers/0/args/2
        value: --publish-service=\$(POD_NAMESPACE)/sluice
      - op: replace
        path: /spec/template/spec/containers/0/args/2
        value: --publish-address=$publish
YAML
kc apply -k "$overlay"
rm -rf "$overlay"
kc -n sluice-system rollout status deployment/sluice --timeout=180s

step "backend, Ingresses and client pod in namespace $ns"
kc create namespace "$ns" --dry-run=client -o yaml | kc apply -f -
kc -n "$ns" apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 2
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
        - name: echo
          image: registry.k8s.io/e2e-test-images/agnhost:2.53
          args: ["netexec", "--http-port=8080"]
          ports: [{containerPort: 8080}]
          readinessProbe: {httpGet: {path: /, port: 8080}}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: echo}
spec:
  ingressClassName: sluice
  rules:
    - host: echo.e2e.test
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: echo, port: {number: 80}}}}
---
# Names a Service that does not exist: sluice must say so in a Warning Event.
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: missing}
spec:
  ingressClassName: sluice
  rules:
    - host: missing.e2e.test
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: nowhere, port: {number: 80}}}}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers:
    - name: client
      image: curlimages/curl:8.11.1
      command: ["sleep", "86400"]
YAML
kc -n "$ns" rollout status deployment/echo --timeout=120s
kc -n "$ns" wait --for=condition=Ready pod/client --timeout=120s

status_of() {
    kc -n "$ns" exec client -- curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
        -H "Host: $1" "http://sluice.sluice-system.svc.cluster.local/"
}
routes() { [ "$(status_of echo.e2e.test)" = 200 ]; }
step "routing: echo.e2e.test answers 200 through sluice"
eventually 60 routes || die "echo.e2e.test does not answer 200 through sluice"
[ "$(status_of nowhere.e2e.test)" = 404 ] || die "an unknown host is not 404"
[ "$(status_of missing.e2e.test)" = 503 ] || die "a missing Service is not 503"

published() {
    [ "$(kc -n "$ns" get ingress echo -o jsonpath='{.status.loadBalancer.ingress[0].ip}')" = "$publish" ]
}
step "status: the leader publishes $publish in the Ingress"
eventually 60 published || die "Ingress echo has no address $publish"

warned() {
    kc -n "$ns" get events --field-selector involvedObject.name=missing,reason=ServiceNotFound \
        -o name | grep -q .
}
step "Events: ServiceNotFound on Ingress missing"
eventually 60 warned || die "no ServiceNotFound Event on Ingress missing"

step "leader"
kc -n sluice-system get lease sluice-leader -o jsonpath='{.spec.holderIdentity}{"\n"}'
echo "e2e: OK"
