"""Offline checks of deploy/ for tests/deploy.rs.

    deploy_check.py validate NAME=FILE... --alerts ALERTS.yaml --k8s VERSION...

Each FILE is the output of `kustomize build` (a stream of YAML documents). Every object is
validated against the Kubernetes JSON schemas of each VERSION (PyPI kubernetes-validate, strict:
unknown fields are errors). ServiceMonitor and PrometheusRule have no schema there: their shape
is checked here against the Prometheus Operator's monitoring.coreos.com/v1 fields. Then what no
schema sees: Services select the Deployment's pods and name its container ports, the
ServiceMonitor selects the metrics Service and names its port, the HPA and PDB target the
Deployment, terminationGracePeriodSeconds exceeds preStop + --shutdown-delay + --shutdown-grace,
and every PrometheusRule holds exactly the groups of ALERTS.yaml.

Prints one JSON object: {"builds": {NAME: [object, ...]}, "errors": [...]}; exits 1 when there
are errors.
"""

import json
import re
import sys

import kubernetes_validate
import yaml

DURATION = re.compile(r"^(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$")
GO_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$")

# monitoring.coreos.com/v1 (prometheus-operator v0.80): the fields each object may have.
SERVICE_MONITOR_SPEC = {
    "selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels", "podTargetLabels",
    "sampleLimit", "targetLimit", "labelLimit", "labelNameLengthLimit", "labelValueLengthLimit",
    "attachMetadata", "scrapeClass", "scrapeProtocols", "fallbackScrapeProtocol",
    "bodySizeLimit", "keepDroppedTargets", "selectorMechanism",
    "nativeHistogramBucketLimit", "nativeHistogramMinBucketFactor",
    "scrapeClassicHistograms", "convertClassicHistogramsToNHCB",
}
ENDPOINT = {
    "port", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout", "tlsConfig",
    "bearerTokenFile", "bearerTokenSecret", "authorization", "honorLabels", "honorTimestamps",
    "trackTimestampsStaleness", "basicAuth", "oauth2", "metricRelabelings", "relabelings",
    "proxyUrl", "noProxy", "proxyFromEnvironment", "proxyConnectHeader", "followRedirects",
    "enableHttp2", "filterRunning",
}
RULE_GROUP = {"name", "interval", "rules", "partial_response_strategy", "limit",
              "query_offset", "labels"}
RULE = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}


class Checker:
    def __init__(self):
        self.errors = []

    def error(self, where, msg):
        self.errors.append(f"{where}: {msg}")

    def keys(self, where, obj, allowed, required=()):
        if not isinstance(obj, dict):
            self.error(where, f"must be a mapping, not {type(obj).__name__}")
            return False
        for k in obj:
            if k not in allowed:
                self.error(where, f"unknown field {k!r}")
        for k in required:
            if k not in obj:
                self.error(where, f"missing required field {k!r}")
        return True

    def string_map(self, where, obj):
        if not isinstance(obj, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in obj.items()
        ):
            self.error(where, "must map strings to strings")

    def metadata(self, where, obj):
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
            self.error(where, "metadata.name is required")
            return
        for k in ("labels", "annotations"):
            if k in meta:
                self.string_map(f"{where}.metadata.{k}", meta[k])

    def service_monitor(self, where, obj):
        self.keys(where, obj, {"apiVersion", "kind", "metadata", "spec"}, ("spec",))
        self.metadata(where, obj)
        spec = obj.get("spec", {})
        if not self.keys(f"{where}.spec", spec, SERVICE_MONITOR_SPEC, ("selector", "endpoints")):
            return
        sel = spec.get("selector", {})
        self.keys(f"{where}.spec.selector", sel, {"matchLabels", "matchExpressions"})
        if not sel.get("matchLabels"):
            self.error(f"{where}.spec.selector", "matchLabels must select the metrics Service")
        else:
            self.string_map(f"{where}.spec.selector.matchLabels", sel["matchLabels"])
        ns = spec.get("namespaceSelector", {})
        self.keys(f"{where}.spec.namespaceSelector", ns, {"any", "matchNames"})
        endpoints = spec.get("endpoints")
        if not isinstance(endpoints, list) or not endpoints:
            self.error(f"{where}.spec.endpoints", "must list at least one endpoint")
            return
        for i, ep in enumerate(endpoints):
            w = f"{where}.spec.endpoints[{i}]"
            if not self.keys(w, ep, ENDPOINT):
                continue
            if not isinstance(ep.get("port"), str):
                self.error(w, "port must name a Service port")
            if not str(ep.get("path", "/metrics")).startswith("/"):
                self.error(f"{w}.path", "must start with /")
            for k in ("interval", "scrapeTimeout"):
                if k in ep and not DURATION.match(str(ep[k])):
                    self.error(f"{w}.{k}", f"{ep[k]!r} is not a Prometheus duration")
            if "interval" in ep and "scrapeTimeout" in ep:
                if seconds(ep["scrapeTimeout"]) > seconds(ep["interval"]):
                    self.error(w, "scrapeTimeout must not exceed interval")
            if ep.get("scheme", "http") not in ("http", "https"):
                self.error(f"{w}.scheme", "must be http or https")

    def rule_groups(self, where, groups):
        if not isinstance(groups, list) or not groups:
            self.error(where, "must list at least one group")
            return
        names = set()
        for i, g in enumerate(groups):
            w = f"{where}[{i}]"
            if not self.keys(w, g, RULE_GROUP, ("name", "rules")):
                continue
            if g["name"] in names:
                self.error(w, f"duplicate group name {g['name']!r}")
            names.add(g["name"])
            for j, r in enumerate(g.get("rules") or []):
                rw = f"{w}.rules[{j}]"
                if not self.keys(rw, r, RULE, ("expr",)):
                    continue
                if ("alert" in r) == ("record" in r):
                    self.error(rw, "needs exactly one of alert and record")
                if not isinstance(r.get("expr"), str) or not r["expr"].strip():
                    self.error(f"{rw}.expr", "must be a non-empty PromQL string")
                for k in ("for", "keep_firing_for"):
                    if k in r and not DURATION.match(str(r[k])):
                        self.error(f"{rw}.{k}", f"{r[k]!r} is not a Prometheus duration")
                for k in ("labels", "annotations"):
                    if k in r:
                        self.string_map(f"{rw}.{k}", r[k])
                if "alert" in r and "severity" not in (r.get("labels") or {}):
                    self.error(f"{rw}.labels", "alerts carry a severity label")

    def prometheus_rule(self, where, obj, alerts):
        self.keys(where, obj, {"apiVersion", "kind", "metadata", "spec"}, ("spec",))
        self.metadata(where, obj)
        spec = obj.get("spec", {})
        if self.keys(f"{where}.spec", spec, {"groups"}, ("groups",)):
            self.rule_groups(f"{where}.spec.groups", spec["groups"])
            if spec != alerts:
                self.error(where, "spec differs from deploy/prometheus/alerts.yaml "
                                  "(the PrometheusRule must hold exactly the same groups)")


def seconds(d):
    total = 0.0
    for num, unit in re.findall(r"([0-9.]+)(ms|us|ns|[smhdwy])", str(d)):
        total += float(num) * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600,
                               "d": 86400, "w": 604800, "y": 31536000}[unit]
    return total


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def cross_checks(c, build, objects):
    """What no schema sees: references between the objects of one build."""
    by_kind = {}
    for o in objects:
        by_kind.setdefault(o["kind"], []).append(o)
    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        c.error(build, f"expected one Deployment, found {len(deployments)}")
        return
    dep = deployments[0]
    ns, name = dep["metadata"].get("namespace"), dep["metadata"]["name"]
    pod = dep["spec"]["template"]
    pod_labels = pod["metadata"].get("labels", {})
    if not selects(dep["spec"]["selector"].get("matchLabels"), pod_labels):
        c.error(f"{build} Deployment {name}", "spec.selector does not select its own pods")
    container = pod["spec"]["containers"][0]
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    args = container.get("args", [])

    def flag(name):
        for a in args:
            if a.startswith(f"--{name}="):
                return a.split("=", 1)[1]
        return None

    # Shutdown: the kubelet's budget covers preStop, the delay and the grace.
    pre_stop = pod["spec"]["containers"][0].get("lifecycle", {}).get("preStop", {})
    pre = pre_stop.get("sleep", {}).get("seconds", 0)
    delay, grace = flag("shutdown-delay"), flag("shutdown-grace")
    tgps = pod["spec"].get("terminationGracePeriodSeconds", 30)
    if delay is None or grace is None:
        c.error(f"{build} Deployment {name}", "args must set --shutdown-delay and --shutdown-grace")
    elif not tgps > pre + seconds(delay) + seconds(grace):
        c.error(f"{build} Deployment {name}",
                f"terminationGracePeriodSeconds {tgps} must exceed preStop {pre}s + "
                f"--shutdown-delay {delay} + --shutdown-grace {grace}")
    # Listeners: the admin API on loopback, metrics where the kubelet and Prometheus reach it.
    admin, metrics = flag("admin-addr"), flag("metrics-addr")
    if admin is None or not admin.startswith("127.0.0.1:"):
        c.error(f"{build} Deployment {name}", f"--admin-addr must stay on loopback, got {admin!r}")
    if metrics is None or metrics.rsplit(":", 1)[-1] != str(ports.get("metrics")):
        c.error(f"{build} Deployment {name}",
                f"--metrics-addr {metrics!r} must listen on the metrics container port {ports.get('metrics')}")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        port = container.get(probe, {}).get("httpGet", {}).get("port")
        if port not in ports:
            c.error(f"{build} Deployment {name}", f"{probe} port {port!r} is not a container port")
    for o in by_kind.get("Service", []):
        w = f"{build} Service {o['metadata']['name']}"
        if not selects(o["spec"].get("selector"), pod_labels):
            c.error(w, "selector does not select the Deployment's pods")
        for p in o["spec"]["ports"]:
            if p.get("targetPort") not in ports:
                c.error(w, f"targetPort {p.get('targetPort')!r} is not a container port name")
    for o in by_kind.get("ServiceMonitor", []):
        w = f"{build} ServiceMonitor {o['metadata']['name']}"
        spec = o["spec"]
        names = spec.get("namespaceSelector", {}).get("matchNames", [o["metadata"].get("namespace")])
        services = [s for s in by_kind.get("Service", [])
                    if s["metadata"].get("namespace") in names
                    and selects(spec["selector"].get("matchLabels"), s["metadata"].get("labels", {}))]
        if len(services) != 1:
            c.error(w, f"selects {len(services)} Services, expected the metrics Service only")
            continue
        svc_ports = {p.get("name") for p in services[0]["spec"]["ports"]}
        for ep in spec["endpoints"]:
            if ep.get("port") not in svc_ports:
                c.error(w, f"endpoint port {ep.get('port')!r} is not a port of {services[0]['metadata']['name']}")
    for o in by_kind.get("HorizontalPodAutoscaler", []):
        ref = o["spec"]["scaleTargetRef"]
        if (ref.get("kind"), ref.get("name"), o["metadata"].get("namespace")) != ("Deployment", name, ns):
            c.error(f"{build} HPA {o['metadata']['name']}", f"scaleTargetRef {ref} is not the Deployment")
    for o in by_kind.get("PodDisruptionBudget", []):
        if not selects(o["spec"].get("selector", {}).get("matchLabels"), pod_labels):
            c.error(f"{build} PDB {o['metadata']['name']}", "selector does not select the Deployment's pods")
    sa = pod["spec"].get("serviceAccountName")
    if not any(s["metadata"]["name"] == sa and s["metadata"].get("namespace") == ns
               for s in by_kind.get("ServiceAccount", [])):
        c.error(f"{build} Deployment {name}", f"ServiceAccount {sa!r} is not in the build")


def main(argv):
    builds, alerts_file, versions, i = [], None, [], 0
    while i < len(argv):
        if argv[i] == "--alerts":
            alerts_file, i = argv[i + 1], i + 2
        elif argv[i] == "--k8s":
            versions.append(argv[i + 1])
            i += 2
        else:
            builds.append(argv[i].split("=", 1))
            i += 1
    with open(alerts_file) as f:
        alerts = yaml.safe_load(f)
    c = Checker()
    c.rule_groups(alerts_file, alerts.get("groups"))
    out = {}
    for name, path in builds:
        with open(path) as f:
            objects = [o for o in yaml.safe_load_all(f) if o]
        out[name] = []
        for o in objects:
            meta = o.get("metadata", {})
            where = f"{name} {o.get('kind')} {meta.get('namespace', '')}/{meta.get('name')}"
            out[name].append(o)
            if o.get("apiVersion") == "monitoring.coreos.com/v1" and o.get("kind") == "ServiceMonitor":
                c.service_monitor(where, o)
                continue
            if o.get("apiVersion") == "monitoring.coreos.com/v1" and o.get("kind") == "PrometheusRule":
                c.prometheus_rule(where, o, alerts)
                continue
            for version in versions:
                try:
                    kubernetes_validate.validate(o, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    path = ".".join(str(p) for p in e.path)
                    c.error(f"{where} (Kubernetes {version})", f"{path}: {e.message}")
                except Exception as e:  # noqa: BLE001 - a missing schema is an error here
                    c.error(f"{where} (Kubernetes {version})", getattr(e, "message", str(e)))
        cross_checks(c, name, objects)
    print(json.dumps({"builds": out, "errors": c.errors}, indent=1))
    return 1 if c.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
