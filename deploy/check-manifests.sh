#!/usr/bin/env bash
# Offline checks of the deployment assets, run by the test command:
#
#   deploy/check-manifests.sh [KUBERNETES_DIR [SYSTEMD_DIR]]
#
# (defaults: deploy/kubernetes and deploy/systemd). It
#   1. creates, or reuses, a Python venv at
#      ${SLUICE_CACHE:-~/.cache/sluice}/venv-manifests with pinned
#      kubernetes-validate, whose wheel carries the Kubernetes JSON schemas,
#      so nothing below needs the network;
#   2. validates every Kubernetes object under KUBERNETES_DIR against the
#      schemas of Kubernetes $SLUICE_KUBERNETES_VERSION (default 1.30.0),
#      strictly: an unknown field, or a kind without a schema, fails;
#   3. checks what the schemas cannot see: that the kustomization lists files
#      that exist (and every manifest is listed or marked "applied
#      separately"), the ServiceMonitor, that selectors, ports, volumes,
#      Secret keys and ConfigMaps refer to each other, and that each role's
#      TOML has only keys its docs/<role>.md reference lists, names files the
#      pod mounts, and does not bind what the role would refuse at start;
#   4. renders the kustomization with `kubectl kustomize` and validates the
#      result the same way, when kubectl is installed (skipped, and said so,
#      when it is not: step 2 has already checked every file);
#   5. runs `systemd-analyze verify` (warnings count as failures) and
#      `systemd-analyze security --offline` on the unit files, and
#      `systemd-sysusers --dry-run` on the sysusers file, when systemd's tools
#      are installed (skipped, and said so, when they are not).
# Exits non-zero, naming the file, on any failure. A second run reuses the
# venv and takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

K8S_DIR="${1:-deploy/kubernetes}"
SYSTEMD_DIR="${2:-deploy/systemd}"
KUBERNETES_VERSION="${SLUICE_KUBERNETES_VERSION:-1.30.0}"
CACHE="${SLUICE_CACHE:-$HOME/.cache/sluice}"
VENV="$CACHE/venv-manifests"
# Exact versions, dependencies included, so every run validates the same way.
REQUIREMENTS=(
  kubernetes-validate==1.37.0
  PyYAML==6.0.3
  jsonschema==4.26.0
  jsonschema-specifications==2025.9.1
  referencing==0.37.0
  rpds-py==2026.9.1
  attrs==26.1.0
  importlib_resources==7.1.0
  packaging==26.4
  typing_extensions==4.16.0
  'tomli==2.3.0; python_version < "3.11"'
)
# systemd-analyze security: the highest exposure accepted, on its 0-100
# scale (the table prints it divided by ten; the units score 1.4-1.5).
SECURITY_THRESHOLD=25

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'check-manifests: FAILED: %s\n' "$*" >&2; exit 1; }

[ -d "$K8S_DIR" ] || die "$K8S_DIR: no such directory"
[ -d "$SYSTEMD_DIR" ] || die "$SYSTEMD_DIR: no such directory"

ensure_venv() {
  local want have
  want="$(printf '%s\n' "${REQUIREMENTS[@]}")"
  mkdir -p "$CACHE"
  # One run at a time builds the venv.
  exec 9>"$CACHE/venv-manifests.lock"
  if command -v flock >/dev/null; then flock 9; fi
  have="$(cat "$VENV/.sluice-requirements" 2>/dev/null || true)"
  if [ -x "$VENV/bin/python" ] && [ "$have" = "$want" ] \
    && "$VENV/bin/python" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
    echo "reusing $VENV"
  else
    command -v python3 >/dev/null || die "python3 not found: install it (Debian: apt-get install python3 python3-venv)"
    echo "creating $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV" \
      || die "python3 -m venv $VENV failed: install Python's venv module (Debian: apt-get install python3-venv)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "${REQUIREMENTS[@]}" \
      || die "pip could not install ${REQUIREMENTS[*]} into $VENV (PyPI must be reachable for the first run)"
    printf '%s\n' "$want" >"$VENV/.sluice-requirements"
  fi
  exec 9>&-
}

# The checker itself: Python, fed on standard input.
run_checker() {
  "$VENV/bin/python" - "$@" <<'PY'
import glob
import os
import re
import sys

import yaml
import kubernetes_validate.utils as kv

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

SEPARATE = "# sluice-check: applied separately"
ROLES = ("control", "ingest", "sender", "recorder", "webhooks")
KUSTOMIZATION_KEYS = {
    "apiVersion", "kind", "namespace", "namePrefix", "nameSuffix", "resources",
    "components", "images", "labels", "commonLabels", "commonAnnotations",
    "patches", "configMapGenerator", "secretGenerator", "generatorOptions",
    "replicas",
}
ENDPOINT_KEYS = {
    "port", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout",
    "authorization", "bearerTokenSecret", "basicAuth", "oauth2", "tlsConfig",
    "honorLabels", "honorTimestamps", "trackTimestampsStaleness", "relabelings",
    "metricRelabelings", "followRedirects", "enableHttp2", "proxyUrl", "filterRunning",
}
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")

errors = []


def fail(where, message):
    errors.append(f"{where}: {message}")


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (the
    second would silently win)."""


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_documents(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        docs = [d for d in yaml.load_all(text, Loader=UniqueKeyLoader) if d is not None]
    except yaml.YAMLError as e:
        fail(path, f"not valid YAML: {e}")
        return text, []
    return text, docs


def name_of(obj):
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', '?')}/{meta.get('name', '?')}"


def schema_check(where, obj, version):
    """Strict validation against the bundled schemas; a kind without a
    schema is a failure, not a warning."""
    if not isinstance(obj, dict) or "apiVersion" not in obj or "kind" not in obj:
        fail(where, "not a Kubernetes object (apiVersion and kind are required)")
        return
    if not (obj.get("metadata") or {}).get("name"):
        fail(where, f"{name_of(obj)}: metadata.name is required")
    try:
        kv.validate(obj, version, strict=True)
    except kv.ValidationError as e:
        path = ".".join(str(p) for p in e.path) or "(top)"
        fail(where, f"{name_of(obj)} does not validate against Kubernetes {e.version}: {path}: {e.message}")
    except (kv.SchemaNotFoundError, kv.InvalidSchemaError, kv.VersionNotSupportedError) as e:
        fail(where, f"{name_of(obj)}: {getattr(e, 'message', e)}")


def rendered(path, version):
    _, docs = load_documents(path)
    if not docs:
        fail(path, "the rendered kustomization holds no object")
    for obj in docs:
        schema_check(f"kubectl kustomize output, {name_of(obj)}", obj, version)
    print(f"rendered kustomization: {len(docs)} objects validated")


# ---------------------------------------------------------------- TOML --

def reference_keys(root, role):
    """The keys of docs/<role>.md's configuration reference table."""
    path = os.path.join(root, "docs", f"{role}.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"<!-- config-reference -->(.*?)<!-- /config-reference -->", text, re.S)
    keys = set(re.findall(r"^\| `([^`]+)` \|", m.group(1), re.M)) if m else set()
    if not keys:
        fail(path, "no configuration reference table found")
    return keys


def flatten(value, prefix=""):
    """(dotted key, value) of every leaf; arrays of tables become `key[]`."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for v in value:
            yield from flatten(v, prefix + "[]")
    else:
        yield prefix, value


def known(key, refs):
    # A documented key whose value is a table of free keys (`routes`,
    # `smtp.ehlo_names`, `shaping`) covers everything under it.
    return key in refs or any(key.startswith(r + ".") for r in refs)


def is_loopback(host):
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.")


def split_addr(addr):
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else None


def check_toml(where, role, text, refs):
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        fail(where, f"not valid TOML: {e}")
        return None
    leaves = list(flatten(config))
    for key, _ in leaves:
        if not known(key, refs):
            fail(where, f"`{key}` is not a key of the {role} configuration (docs/{role}.md); the role would refuse it")
    # What the role refuses at start (docs/security.md, "Refused at start").
    tls = config.get("tls", {})
    plaintext_ok = tls.get("allow_plaintext", False) or "cert_file" in tls
    if "cert_file" in tls and "key_file" not in tls:
        fail(where, "tls.cert_file without tls.key_file")
    if "client_ca_file" in tls:
        fail(where, "tls.client_ca_file asks every client, the kubelet's HTTPS probes included, for a certificate they do not have")
    for key, value in leaves:
        if not (key in ("listen", "query_listen", "metrics.listen") or key.startswith("listen.")):
            continue
        host, port = split_addr(str(value))
        if port is None:
            fail(where, f"`{key}` = {value!r} has no port")
        elif not is_loopback(host):
            if not plaintext_ok:
                fail(where, f"`{key}` binds {value} off loopback without tls.cert_file: the role refuses to start")
            if key == "metrics.listen" and "token_file" not in config.get("metrics", {}):
                fail(where, "metrics.listen off loopback without metrics.token_file: the role refuses to start")
            if role in ("control", "recorder") and key != "metrics.listen" \
                    and not config.get("credentials") and not config.get("allow_unauthenticated"):
                fail(where, f"`{key}` off loopback without credentials: the role refuses to start")
    return config


def listen_ports(config):
    ports = {}
    for key, value in flatten(config):
        if key in ("listen", "query_listen", "metrics.listen") or key.startswith("listen."):
            ports[key] = split_addr(str(value))[1]
    return ports


# ---------------------------------------------------------- manifests --

def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_templates(objects):
    for where, obj in objects:
        if obj.get("kind") in WORKLOADS:
            yield where, obj, obj.get("spec", {}).get("template", {})


def secret_keys(obj):
    return set((obj.get("data") or {}).keys()) | set((obj.get("stringData") or {}).keys())


def volume_files(volume, configmaps, secrets):
    """The file names a ConfigMap or Secret volume shows (None: unknown)."""
    if "configMap" in volume:
        source = volume["configMap"]
        obj = configmaps.get(source.get("name"))
        keys = set((obj or {}).get("data") or {}) if obj else None
    elif "secret" in volume:
        source = volume["secret"]
        obj = secrets.get(source.get("secretName"))
        keys = secret_keys(obj) if obj else None
    else:
        return None
    if source.get("items"):
        return {item["path"] for item in source["items"]}
    return keys


def check_pod(where, owner, template, configmaps, secrets, services, namespace, refs_of):
    spec = template.get("spec", {})
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for v in volumes.values():
        optional = (v.get("configMap") or v.get("secret") or {}).get("optional", False)
        if "configMap" in v and v["configMap"]["name"] not in configmaps and not optional:
            fail(where, f"{owner}: volume {v['name']} names ConfigMap {v['configMap']['name']}, which no manifest defines")
        if "secret" in v:
            name = v["secret"]["secretName"]
            if name not in secrets:
                if not optional:
                    fail(where, f"{owner}: volume {v['name']} names Secret {name}, which no manifest (secrets.example.yaml) describes")
                continue
            for item in v["secret"].get("items", []):
                if item["key"] not in secret_keys(secrets[name]):
                    fail(where, f"{owner}: volume {v['name']} wants key {item['key']} of Secret {name}, which has no such key")
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        cname = f"{owner} container {c['name']}"
        named_ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        numbers = set(named_ports.values())
        files, writable = {}, []
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes:
                fail(where, f"{cname}: volumeMount {m['name']} has no volume")
                continue
            if not m.get("readOnly"):
                writable.append(m["mountPath"])
            shown = volume_files(volumes[m["name"]], configmaps, secrets)
            for f in shown or ():
                files[os.path.join(m["mountPath"], f)] = volumes[m["name"]]
        for e in c.get("env", []):
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref and not ref.get("optional"):
                if ref["name"] not in secrets:
                    fail(where, f"{cname}: env {e['name']} names Secret {ref['name']}, which no manifest describes")
                elif ref["key"] not in secret_keys(secrets[ref["name"]]):
                    fail(where, f"{cname}: env {e['name']} wants key {ref['key']} of Secret {ref['name']}, which has no such key")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
            if isinstance(port, str) and port not in named_ports:
                fail(where, f"{cname}: {probe} uses port {port}, which the container does not name")
        args = c.get("args", [])
        if "--config" not in args:
            continue
        role = args[0] if args and args[0] in ROLES else None
        path = args[args.index("--config") + 1] if args.index("--config") + 1 < len(args) else ""
        if path not in files:
            fail(where, f"{cname}: --config {path} is not a file any volume of the pod provides")
            continue
        volume = files[path]
        if "configMap" not in volume:
            continue
        data = configmaps[volume["configMap"]["name"]].get("data", {})
        key = next((i["key"] for i in volume["configMap"].get("items", []) if i["path"] == os.path.basename(path)),
                   os.path.basename(path))
        if role is None:
            continue  # `sluice migrate` reads the recorder's file: checked with the recorder
        config = check_toml(f"{where} ({cname}, {key})", role, data.get(key, ""), refs_of[role])
        if config is None:
            continue
        for k, port in listen_ports(config).items():
            if port is not None and port not in numbers:
                fail(where, f"{cname}: {key} `{k}` listens on {port}, which the container does not declare as a port")
        for k, value in flatten(config):
            if not isinstance(value, str):
                continue
            if value.startswith("/etc/sluice/") and value not in files:
                fail(where, f"{cname}: {key} `{k}` = {value}, which no volume of the pod provides")
            if value.startswith("/var/lib/sluice/") and not any(value.startswith(w.rstrip("/") + "/") for w in writable):
                fail(where, f"{cname}: {key} `{k}` = {value} is not on a writable volume")
            m = re.match(r"^https?://([a-z0-9-]+)\.([a-z0-9-]+)\.svc(?:\.cluster\.local)?:(\d+)$", value)
            if m and m.group(2) == namespace:
                svc = services.get(m.group(1))
                if svc is None:
                    fail(where, f"{cname}: {key} `{k}` = {value} names Service {m.group(1)}, which no manifest defines")
                elif int(m.group(3)) not in {p["port"] for p in svc["spec"].get("ports", [])}:
                    fail(where, f"{cname}: {key} `{k}` = {value}: Service {m.group(1)} has no port {m.group(3)}")


def check_services(objects, templates):
    for where, svc in objects:
        if svc.get("kind") != "Service":
            continue
        selector = svc.get("spec", {}).get("selector") or {}
        pods = [t for _, _, t in templates if labels_match(selector, t.get("metadata", {}).get("labels", {}))]
        if not pods:
            fail(where, f"{name_of(svc)}: its selector {selector} matches no pod template")
            continue
        for p in svc["spec"].get("ports", []):
            target = p.get("targetPort", p.get("port"))
            for t in pods:
                ports = [q for c in t["spec"].get("containers", []) for q in c.get("ports", [])]
                if isinstance(target, str) and target not in {q.get("name") for q in ports}:
                    fail(where, f"{name_of(svc)}: port {p.get('name')} targets {target}, which its pods do not name")
                if isinstance(target, int) and target not in {q["containerPort"] for q in ports}:
                    fail(where, f"{name_of(svc)}: port {p.get('name')} targets {target}, which its pods do not declare")


def check_references(objects, templates):
    by_kind = {}
    for where, obj in objects:
        by_kind.setdefault(obj.get("kind"), {})[obj["metadata"]["name"]] = (where, obj)
    for where, obj, template in templates:
        selector = (obj.get("spec", {}).get("selector") or {}).get("matchLabels", {})
        if obj["kind"] != "Job" and not labels_match(selector, template.get("metadata", {}).get("labels", {})):
            fail(where, f"{name_of(obj)}: selector {selector} does not match its own pod template's labels")
        if obj["kind"] == "StatefulSet":
            svc = by_kind.get("Service", {}).get(obj["spec"].get("serviceName"))
            if not svc or svc[1]["spec"].get("clusterIP") != "None":
                fail(where, f"{name_of(obj)}: serviceName must name a headless Service of these manifests")
    for where, obj in objects:
        if obj.get("kind") == "PodDisruptionBudget":
            selector = obj["spec"].get("selector", {}).get("matchLabels", {})
            if not any(labels_match(selector, t.get("metadata", {}).get("labels", {})) for _, _, t in templates):
                fail(where, f"{name_of(obj)}: selector {selector} matches no pod template")
        if obj.get("kind") == "HorizontalPodAutoscaler":
            target = obj["spec"]["scaleTargetRef"]
            found = by_kind.get(target["kind"], {}).get(target["name"])
            if not found:
                fail(where, f"{name_of(obj)}: scaleTargetRef {target['kind']}/{target['name']} is not in these manifests")
            elif "replicas" in found[1]["spec"]:
                fail(found[0], f"{name_of(found[1])}: sets replicas although {name_of(obj)} owns the count (apply would reset it)")


def expressions_match(where, obj, expressions, labels):
    """A label selector's matchExpressions (In, NotIn, Exists, DoesNotExist)."""
    for e in expressions:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In":
            ok = labels.get(key) in values
        elif op == "NotIn":
            ok = labels.get(key) not in values
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:
            fail(where, f"{name_of(obj)}: matchExpressions operator {op!r} is not one of In, NotIn, Exists, DoesNotExist")
            return False
        if not ok:
            return False
    return True


def check_servicemonitor(where, obj, services, secrets, namespace):
    if obj.get("apiVersion") != "monitoring.coreos.com/v1" or obj.get("kind") != "ServiceMonitor":
        fail(where, f"{name_of(obj)}: expected apiVersion monitoring.coreos.com/v1, kind ServiceMonitor")
        return
    if not (obj.get("metadata") or {}).get("name"):
        fail(where, "ServiceMonitor: metadata.name is required")
    spec = obj.get("spec") or {}
    unknown = set(spec) - {"selector", "namespaceSelector", "endpoints", "jobLabel", "targetLabels",
                           "podTargetLabels", "sampleLimit", "targetLimit", "labelLimit",
                           "attachMetadata", "scrapeClass"}
    if unknown:
        fail(where, f"{name_of(obj)}: unknown spec fields {sorted(unknown)}")
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    if not selector:
        fail(where, f"{name_of(obj)}: spec.selector.matchLabels must select Sluice's Services")
    names = (spec.get("namespaceSelector") or {}).get("matchNames")
    if names is not None and namespace not in names:
        fail(where, f"{name_of(obj)}: namespaceSelector does not include namespace {namespace}")
    expressions = (spec.get("selector") or {}).get("matchExpressions") or []
    matched = [s for s in services.values()
               if labels_match(selector, s["metadata"].get("labels", {}))
               and expressions_match(where, obj, expressions, s["metadata"].get("labels", {}))]
    if not matched:
        fail(where, f"{name_of(obj)}: selector {selector} matches no Service")
    endpoints = spec.get("endpoints") or []
    if not endpoints:
        fail(where, f"{name_of(obj)}: spec.endpoints is empty")
    for i, ep in enumerate(endpoints):
        unknown = set(ep) - ENDPOINT_KEYS
        if unknown:
            fail(where, f"{name_of(obj)}: endpoints[{i}] has unknown fields {sorted(unknown)}")
        if not isinstance(ep.get("port"), str):
            fail(where, f"{name_of(obj)}: endpoints[{i}].port must name a Service port")
        for s in matched:
            if ep.get("port") not in {p.get("name") for p in s["spec"].get("ports", [])}:
                fail(where, f"{name_of(obj)}: endpoints[{i}].port {ep.get('port')} is not a port of Service {s['metadata']['name']}")
        if ep.get("scheme", "http") not in ("http", "https"):
            fail(where, f"{name_of(obj)}: endpoints[{i}].scheme must be http or https")
        refs = [((ep.get("authorization") or {}).get("credentials")),
                (((ep.get("tlsConfig") or {}).get("ca") or {}).get("secret"))]
        for ref in filter(None, refs):
            secret = secrets.get(ref.get("name"))
            if secret is None or ref.get("key") not in secret_keys(secret):
                fail(where, f"{name_of(obj)}: endpoints[{i}] wants key {ref.get('key')} of Secret {ref.get('name')}, which secrets.example.yaml does not have")


def check_kustomization(kdir, path, docs, files, separate, objects):
    if len(docs) != 1 or not isinstance(docs[0], dict):
        fail(path, "must hold exactly one Kustomization")
        return None
    k = docs[0]
    if k.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or k.get("kind") != "Kustomization":
        fail(path, "expected apiVersion kustomize.config.k8s.io/v1beta1, kind Kustomization")
    unknown = set(k) - KUSTOMIZATION_KEYS
    if unknown:
        fail(path, f"unknown fields {sorted(unknown)}")
    listed = k.get("resources") or []
    for r in listed:
        if not os.path.exists(os.path.join(kdir, r)):
            fail(path, f"resources lists {r}, which does not exist")
    if len(set(listed)) != len(listed):
        fail(path, "resources lists a file twice")
    for f in files:
        name = os.path.basename(f)
        if name in separate and name in listed:
            fail(path, f"{name} is marked '{SEPARATE}' but listed in resources")
        if name not in separate and name not in listed:
            fail(path, f"{name} is neither listed in resources nor marked '{SEPARATE}'")
    namespace = k.get("namespace")
    for where, obj in objects:
        if obj.get("kind") == "Namespace" and namespace and obj["metadata"]["name"] != namespace:
            fail(where, f"Namespace {obj['metadata']['name']} is not the kustomization's namespace {namespace}")
        ns = obj.get("metadata", {}).get("namespace")
        if ns and namespace and ns != namespace:
            fail(where, f"{name_of(obj)} is in namespace {ns}, the kustomization's is {namespace}")
    images = {i.get("name") for i in k.get("images") or []}
    for where, obj, template in pod_templates(objects):
        if os.path.basename(where) not in listed:
            continue
        for c in template.get("spec", {}).get("containers", []):
            if images and c.get("image") not in images:
                fail(where, f"{name_of(obj)}: image {c.get('image')} is not set by the kustomization's images")
    return namespace


def main(root, kdir, version):
    files = sorted(glob.glob(os.path.join(kdir, "*.yaml")) + glob.glob(os.path.join(kdir, "*.yml")))
    manifests, objects, separate, kustomization, placeholders = [], [], set(), None, 0
    for f in files:
        text, docs = load_documents(f)
        placeholders += text.count("REPLACE")
        if os.path.basename(f) == "kustomization.yaml":
            kustomization = (f, docs)
            continue
        manifests.append(f)
        if SEPARATE in text:
            separate.add(os.path.basename(f))
        if not docs:
            fail(f, "holds no object")
        objects += [(f, d) for d in docs if isinstance(d, dict)]
    if kustomization is None:
        fail(kdir, "no kustomization.yaml")
    if not objects:
        fail(kdir, "no manifests")

    monitors = [(w, o) for w, o in objects if str(o.get("apiVersion", "")).startswith("monitoring.coreos.com/")]
    core = [(w, o) for w, o in objects if (w, o) not in monitors]
    for where, obj in core:
        schema_check(where, obj, version)
    if errors:
        return  # the cross-checks below assume well-formed objects
    print(f"schemas: {len(core)} objects in {len(manifests)} files valid for Kubernetes {version} (strict)")

    namespace = check_kustomization(kdir, *kustomization, manifests, separate, objects) if kustomization else None
    namespace = namespace or "default"
    configmaps = {o["metadata"]["name"]: o for _, o in core if o["kind"] == "ConfigMap"}
    secrets = {o["metadata"]["name"]: o for _, o in core if o["kind"] == "Secret"}
    services = {o["metadata"]["name"]: o for _, o in core if o["kind"] == "Service"}
    refs_of = {role: reference_keys(root, role) for role in ROLES}
    templates = list(pod_templates(core))
    for where, obj, template in templates:
        check_pod(where, name_of(obj), template, configmaps, secrets, services, namespace, refs_of)
    check_services(core, templates)
    check_references(core, templates)
    for where, obj in monitors:
        check_servicemonitor(where, obj, services, secrets, namespace)
    # Role files no workload reads are still checked, by their name.
    for where, cm in core:
        if cm["kind"] != "ConfigMap":
            continue
        for key, text in (cm.get("data") or {}).items():
            role = key[:-5] if key.endswith(".toml") else None
            used = any((v.get("configMap") or {}).get("name") == cm["metadata"]["name"]
                       for _, _, t in templates for v in t.get("spec", {}).get("volumes", []))
            if role in refs_of and not used:
                check_toml(f"{where} ({key})", role, text, refs_of[role])
    print(f"cross-checks: {len(templates)} pod templates, {len(services)} Services, "
          f"{len(configmaps)} ConfigMaps, {len(monitors)} ServiceMonitor(s), kustomization")
    if placeholders:
        print(f"note: {placeholders} REPLACE placeholders, as a base has them (deploy/kubernetes/README.md)")


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "rendered":
        rendered(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[2], sys.argv[3], sys.argv[4])
    if errors:
        for e in errors:
            print(f"FAIL {e}", file=sys.stderr)
        sys.exit(1)
PY
}

step "Python venv with kubernetes-validate"
ensure_venv

step "Kubernetes manifests in $K8S_DIR (schemas of Kubernetes $KUBERNETES_VERSION, strict)"
run_checker check "$ROOT" "$K8S_DIR" "$KUBERNETES_VERSION" \
  || die "Kubernetes manifests in $K8S_DIR (the lines above name each file)"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

step "kustomization rendered by kubectl kustomize"
if command -v kubectl >/dev/null; then
  timeout 120 kubectl kustomize "$K8S_DIR" >"$TMP/rendered.yaml" 2>"$TMP/kustomize.err" \
    || { cat "$TMP/kustomize.err" >&2; die "$K8S_DIR/kustomization.yaml: kubectl kustomize failed"; }
  run_checker rendered "$TMP/rendered.yaml" "$KUBERNETES_VERSION" \
    || die "$K8S_DIR/kustomization.yaml: the rendered objects do not validate"
else
  echo "skipped: kubectl is not installed (every manifest file was validated above)"
fi

step "systemd units in $SYSTEMD_DIR"
units=("$SYSTEMD_DIR"/*.service)
[ -e "${units[0]}" ] || die "$SYSTEMD_DIR: no .service files"
if command -v systemd-analyze >/dev/null; then
  # An offline root: the system's own units (for sysinit.target and the
  # like), a stand-in for the binary ExecStart names, and the units.
  SYSROOT="$TMP/root"
  mkdir -p "$SYSROOT/usr/lib/systemd" "$SYSROOT/etc/systemd/system" "$SYSROOT/usr/local/bin"
  for dir in /usr/lib/systemd/system /lib/systemd/system; do
    if [ -d "$dir" ]; then cp -a "$dir" "$SYSROOT/usr/lib/systemd/"; break; fi
  done
  printf '#!/bin/sh\nexit 0\n' >"$SYSROOT/usr/local/bin/sluice"
  chmod 0755 "$SYSROOT/usr/local/bin/sluice"
  cp "${units[@]}" "$SYSROOT/etc/systemd/system/"
  for unit in "${units[@]}"; do
    name="$(basename "$unit")"
    # verify exits 0 on unknown keys and bad values: any output is a failure.
    if ! out="$(systemd-analyze verify --root="$SYSROOT" --man=no "$SYSROOT/etc/systemd/system/$name" 2>&1)" \
      || [ -n "$out" ]; then
      printf '%s\n' "$out" >&2
      die "$unit: systemd-analyze verify"
    fi
    out="$(systemd-analyze security --offline=true --root="$SYSROOT" --no-pager \
      --threshold="$SECURITY_THRESHOLD" "$SYSROOT/etc/systemd/system/$name" 2>&1)" \
      || { printf '%s\n' "$out" >&2; die "$unit: systemd-analyze security exposure above $SECURITY_THRESHOLD (0-100 scale)"; }
    echo "$name: verify clean; $(printf '%s\n' "$out" | tail -n 1 | sed 's/^→ //')"
  done
else
  echo "skipped: systemd-analyze is not installed (Debian: package systemd)"
fi
for conf in "$SYSTEMD_DIR"/*.sysusers.conf; do
  [ -e "$conf" ] || continue
  if command -v systemd-sysusers >/dev/null; then
    mkdir -p "$TMP/sysusers/etc"
    # A dry run into an empty root; it exits 0 on ignored lines, so anything
    # but the lines that say what it would create is a failure.
    abs="$(cd "$(dirname "$conf")" && pwd)/$(basename "$conf")"
    out="$(systemd-sysusers --root="$TMP/sysusers" --dry-run "$abs" 2>&1)" \
      && ! printf '%s\n' "$out" | grep -qv -e '^Would write' -e '^Creating group' -e '^Creating user' \
      || { printf '%s\n' "$out" >&2; die "$conf: systemd-sysusers --dry-run"; }
    echo "$(basename "$conf"): systemd-sysusers accepts it"
  else
    echo "skipped $(basename "$conf"): systemd-sysusers is not installed"
  fi
done

printf '\ncheck-manifests: all checks passed\n'
