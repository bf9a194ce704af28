#!/usr/bin/env bash
# Chaos run on the kind cluster of deploy/kind/e2e.sh: under a steady load from the client pod,
#   1. deletes the sluice pods one by one (each replaced and ready before the next),
#   2. deletes the leader's pod (another replica must take the Lease),
#   3. crashes every actor of every replica through --chaos (POST /debug/crash/{actor} on the
#      admin API, reached with kubectl port-forward since it listens on the pod's loopback),
#   4. cuts the API server off for 30 s (docker pause of the control-plane node).
# Then reports the requests that did not get a 200, per phase. Every phase must fail none: a
# deleted pod drains (preStop, --shutdown-delay, --shutdown-grace), a crashed actor is
# restarted without dropping connections, and without the API server every replica keeps
# serving its last configuration. Exits 1 when a request failed.
#
#   KEEP_CLUSTER=1 deploy/kind/e2e.sh && deploy/kind/chaos.sh
#
# Needs docker, kind, kubectl, curl. It cannot run on a machine without Docker
# (docs/operations.md).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cluster="${CLUSTER:-sluice-e2e}"
ctx="kind-$cluster"
ns=e2e
actors="watcher router status certificate leader listener-http listener-https admin"
kc() { kubectl --context "$ctx" "$@"; }
step() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}
now() { date +%s; }

for tool in docker kind kubectl curl; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done
kind get clusters | grep -qx "$cluster" ||
    die "no kind cluster $cluster: run KEEP_CLUSTER=1 $root/deploy/kind/e2e.sh first"

ready() {
    local want have
    want="$(kc -n sluice-system get deployment sluice -o jsonpath='{.spec.replicas}')"
    have="$(kc -n sluice-system get deployment sluice -o jsonpath='{.status.readyReplicas}')"
    [ "$want" = "$have" ] &&
        [ "$(kc -n sluice-system get deployment sluice -o jsonpath='{.status.updatedReplicas}')" = "$want" ]
}
wait_ready() {
    local deadline=$((SECONDS + 180))
    until ready; do
        [ "$SECONDS" -lt "$deadline" ] || die "sluice is not ready again within 180 s"
        sleep 2
    done
}
pods() { kc -n sluice-system get pods -l app.kubernetes.io/name=sluice -o jsonpath='{.items[*].metadata.name}'; }
holder() { kc -n sluice-system get lease sluice-leader -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true; }

step "enable --chaos on the Deployment"
if ! kc -n sluice-system get deployment sluice -o jsonpath='{.spec.template.spec.containers[0].args}' | grep -q -- '--chaos'; then
    kc -n sluice-system patch deployment sluice --type=json \
        -p '[{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--chaos"}]'
fi
kc -n sluice-system rollout status deployment/sluice --timeout=180s

step "load from the client pod"
# One request at a time until /tmp/stop exists: "<unix time> <status>" per line in /tmp/codes.
# The script runs in the pod's shell (single quotes on purpose).
# shellcheck disable=SC2016
kc -n "$ns" exec client -- sh -c 'rm -f /tmp/codes /tmp/stop; nohup sh -c "
    while [ ! -f /tmp/stop ]; do
        code=\$(curl -s -o /dev/null -w %{http_code} --max-time 10 -H \"Host: echo.e2e.test\" http://sluice.sluice-system.svc.cluster.local/)
        echo \$(date +%s) \$code >> /tmp/codes
    done" >/dev/null 2>&1 &'
sleep 5

phases=()
mark() { phases+=("$1 $2 $(now)"); }

# 1. Pods one by one.
start="$(now)"
for pod in $(pods); do
    step "delete pod $pod"
    kc -n sluice-system delete pod "$pod" --wait=true
    wait_ready
done
mark pods "$start"

# 2. The leader's pod (its identity is the pod name and a random suffix).
start="$(now)"
leader="$(holder)"
[ -n "$leader" ] || die "no leader holds the Lease"
leader_pod="${leader%-*}"
step "delete the leader pod $leader_pod"
kc -n sluice-system delete pod "$leader_pod" --wait=true
deadline=$((SECONDS + 60))
until [ -n "$(holder)" ] && [ "$(holder)" != "$leader" ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "no other replica took the Lease within 60 s"
    sleep 1
done
wait_ready
mark leader "$start"

# 3. Every actor of every replica.
start="$(now)"
port=19090
for pod in $(pods); do
    step "crash every actor of $pod"
    kc -n sluice-system port-forward "pod/$pod" "$port:9090" >/dev/null 2>&1 &
    forward=$!
    deadline=$((SECONDS + 30))
    until curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "port-forward to $pod failed"
        sleep 1
    done
    for actor in $actors; do
        curl -fsS -X POST "http://127.0.0.1:$port/debug/crash/$actor" >/dev/null 2>&1 ||
            echo "  $actor: not crashed (not running in this replica?)" >&2
        sleep 2
    done
    kill "$forward"
    wait "$forward" 2>/dev/null || true
done
wait_ready
mark actors "$start"

# 4. The API server away for 30 s.
start="$(now)"
step "pause the control plane for 30 s"
docker pause "$cluster-control-plane" >/dev/null
sleep 30
docker unpause "$cluster-control-plane" >/dev/null
wait_ready
mark apiserver "$start"

sleep 5
kc -n "$ns" exec client -- touch /tmp/stop
sleep 2
codes="$(kc -n "$ns" exec client -- cat /tmp/codes)"

step "report"
total="$(wc -l <<<"$codes")"
for p in "${phases[@]}"; do
    read -r name from to <<<"$p"
    in_phase="$(awk -v a="$from" -v b="$to" '$1 >= a && $1 <= b' <<<"$codes")"
    n="$(grep -c . <<<"$in_phase" || true)"
    bad="$(awk '$2 != "200"' <<<"$in_phase")"
    nbad="$(grep -c . <<<"$bad" || true)"
    printf '%-10s %6s requests, %s failed\n' "$name" "$n" "$nbad"
    if [ "$nbad" != 0 ]; then
        awk '{print "    " $2}' <<<"$bad" | sort | uniq -c
    fi
done
all_bad="$(awk '$2 != "200"' <<<"$codes" | grep -c . || true)"
printf 'overall    %6s requests, %s failed\n' "$total" "$all_bad"
[ "$all_bad" = 0 ] || die "$all_bad requests failed"
echo "chaos: OK"
