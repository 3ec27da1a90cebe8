#!/usr/bin/env bash
# Validates what deploy/ ships: the Kubernetes manifests against the
# Kubernetes API schemas, strictly (unknown fields are errors), for the
# oldest and newest Kubernetes versions weft supports; the Dockerfile's
# syntax (BuildKit's own parser) and that the files it copies exist; the
# shell script's syntax; the kustomize base and overlays (deploy/base,
# deploy/k3s) rendered and held to the same checks.
#
# The validator is kubernetes-validate from PyPI: it bundles the OpenAPI
# JSON schemas of every Kubernetes version in the package, so nothing is
# downloaded when it runs. It is installed once, pinned, into its own venv
# (default ~/.cache/weft/kubernetes-validate-<version>; override with
# WEFT_TOOLS_DIR). Also checks that the JSON documents embedded in the
# ConfigMap (net-conf.json, cni-conf.json) parse.
set -euo pipefail
cd "$(dirname "$0")/.."

version=1.37.0
kube_versions=(1.33.0 1.37.0)
venv="${WEFT_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/weft}/kubernetes-validate-$version"

# The stamp is written only after a complete install.
if [[ ! -f "$venv/.weft-ready" ]]; then
  echo "validate-manifests: installing kubernetes-validate==$version into $venv"
  python3 -m venv "$venv"
  # dockerfile: Python bindings to BuildKit's Dockerfile parser.
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$version" "dockerfile==3.4.0"
  touch "$venv/.weft-ready"
fi

manifests=(deploy/base/*.yml)
status=0
for k in "${kube_versions[@]}"; do
  echo "== kubernetes-validate --strict -k $k ${manifests[*]}"
  if ! "$venv/bin/kubernetes-validate" --strict --quiet -k "$k" "${manifests[@]}"; then
    status=1
  fi
done

echo "== embedded JSON documents"
"$venv/bin/python" - "${manifests[@]}" <<'PY' || status=1
import json, sys, yaml
bad = 0
for path in sys.argv[1:]:
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if not doc or doc.get("kind") != "ConfigMap":
                continue
            for key, text in (doc.get("data") or {}).items():
                if key.endswith(".json"):
                    try:
                        json.loads(text)
                        print(f"ok {path}: {doc['metadata']['name']}/{key}")
                    except ValueError as e:
                        print(f"ERROR {path}: {doc['metadata']['name']}/{key}: {e}")
                        bad = 1
sys.exit(bad)
PY

echo "== deploy/Dockerfile"
"$venv/bin/python" - deploy/Dockerfile <<'PY' || status=1
import os, sys, dockerfile
cmds = dockerfile.parse_file(sys.argv[1])
bad = 0
for c in cmds:
    if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags):
        for src in c.value[:-1]:
            if not os.path.exists(src):
                print(f"ERROR line {c.start_line}: COPY source {src} does not exist")
                bad = 1
print(f"{'ERROR' if bad else 'ok'} {sys.argv[1]}: {len(cmds)} instructions, "
      f"{sum(c.cmd == 'FROM' for c in cmds)} stages")
sys.exit(bad)
PY
sh -n deploy/iptables-select.sh && echo "ok deploy/iptables-select.sh" || status=1

# The kustomize overlays (docs/k3s.md), rendered as `kubectl apply -k`
# would, then held to the same strict schemas and JSON checks, plus what
# each overlay promises: its cluster network, the base's CNI directories
# (containerd's defaults, where K3s without its flannel looks), and a
# net-conf.json that `weft config validate` accepts.
if ! command -v kubectl >/dev/null; then
  echo "ERROR: kubectl (for kubectl kustomize) is missing: apt-get install -y kubectl"
  exit 1
fi
rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
declare -A networks=(
  [deploy/base]="10.244.0.0/16 -"
  [deploy/k3s]="10.42.0.0/16 -"
  [deploy/k3s/dual-stack]="10.42.0.0/16 2001:cafe:42::/56"
)
for overlay in deploy/base deploy/k3s deploy/k3s/dual-stack; do
  out="$rendered/$(echo "$overlay" | tr / _).yml"
  echo "== kubectl kustomize $overlay"
  if ! kubectl kustomize "$overlay" >"$out"; then
    status=1
    continue
  fi
  for k in "${kube_versions[@]}"; do
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$k" "$out" || status=1
  done
  read -r v4 v6 <<<"${networks[$overlay]}"
  "$venv/bin/python" - "$out" "$v4" "$v6" "$rendered/net-conf.json" <<'PY' || status=1
import json, sys, yaml
path, v4, v6, netconf_out = sys.argv[1:]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "kube-flannel-cfg")
conf = json.loads(cm["data"]["net-conf.json"])
json.loads(cm["data"]["cni-conf.json"])
bad = []
if conf.get("Network") != v4:
    bad.append(f"Network is {conf.get('Network')}, want {v4}")
if (conf.get("IPv6Network") or "-") != v6:
    bad.append(f"IPv6Network is {conf.get('IPv6Network')}, want {v6}")
ds = next(d for d in docs if d["kind"] == "DaemonSet")
paths = {v["name"]: v.get("hostPath", {}).get("path") for v in ds["spec"]["template"]["spec"]["volumes"]}
for name, want in (("cni-plugin", "/opt/cni/bin"), ("cni", "/etc/cni/net.d")):
    if paths.get(name) != want:
        bad.append(f"volume {name} is {paths.get(name)}, want {want}")
open(netconf_out, "w").write(cm["data"]["net-conf.json"])
for b in bad:
    print(f"ERROR {path}: {b}")
print(f"{'ERROR' if bad else 'ok'} {path}: {len(docs)} objects, Network {v4}, IPv6Network {v6}")
sys.exit(1 if bad else 0)
PY
  if ! cargo run --quiet --locked -p weft --bin weft -- config validate "$rendered/net-conf.json" >/dev/null; then
    echo "ERROR $overlay: weft config validate refused its net-conf.json"
    status=1
  fi
done

if [[ $status -eq 0 ]]; then
  echo "validate-manifests: ${#manifests[@]} manifests valid"
fi
exit $status
