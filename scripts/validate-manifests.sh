#!/usr/bin/env bash
# Validates what deploy/ ships: the Kubernetes manifests against the
# Kubernetes API schemas, strictly (unknown fields are errors), for the
# oldest and newest Kubernetes versions weft supports; the Dockerfile's
# syntax (BuildKit's own parser) and that the files it copies exist; the
# shell script's syntax.
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

manifests=(deploy/*.yml)
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

if [[ $status -eq 0 ]]; then
  echo "validate-manifests: ${#manifests[@]} manifests valid"
fi
exit $status
