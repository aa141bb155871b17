#!/usr/bin/env bash
# Renders the Helm chart (deploy/helm/coffer) and validates the manifests
# with a real schema validator (kubernetes-validate, from PyPI), since no
# Kubernetes runs here. With helm installed it also runs `helm lint` and
# renders with `helm template`; without it, deploy/helm/render.py renders
# the template subset the chart uses (and refuses anything else).
# Checks the rendered node config with the binary itself (--print-config).
#
#   COFFER_BIN=path/to/coffer deploy/helm-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'helm-test: %s\n' "$*"; }
bin=${COFFER_BIN:-${CARGO_TARGET_DIR:-target}/debug/coffer}
venv=${COFFER_HELM_VENV:-/var/tmp/coffer-helm-venv}
k8s_versions=(1.29.0 1.33.0)

if [[ ! -x $venv/bin/kubernetes-validate ]]; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q kubernetes-validate pyyaml \
    || { say "SKIPPED: cannot install kubernetes-validate from PyPI"; exit 0; }
fi
py=$venv/bin/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chart=deploy/helm/coffer

render() { # render OUT [--set k=v ...]
  local out=$1; shift
  if command -v helm >/dev/null 2>&1; then
    local sets=(); local a
    for a in "$@"; do sets+=("$a"); done
    helm template coffer "$chart" --namespace default "${sets[@]}" >"$out"
  else
    "$py" deploy/helm/render.py "$chart" --name coffer --namespace default "$@" >"$out"
  fi
}
if command -v helm >/dev/null 2>&1; then
  helm lint "$chart" >/dev/null
  say "helm lint passed; rendering with helm template"
else
  say "helm is not installed (not in Debian's or PyPI's packages): rendering with deploy/helm/render.py (template subset)"
fi

render "$work/default.yaml"
render "$work/hsm.yaml" --set hsm.enabled=true --set hsm.moduleHostPath=/usr/lib/vendor-pkcs11 \
  --set hsm.softhsmTokenClaim=softhsm-tokens --set storage.storageClassName=fast --set lockMemory=true
for f in default hsm; do
  for v in "${k8s_versions[@]}"; do
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "$work/$f.yaml" \
      || { say "$f.yaml does not validate against Kubernetes $v"; exit 1; }
  done
done
say "rendered manifests (default, HSM variant) validate (strict) against Kubernetes ${k8s_versions[*]}"

# What the chart promises, checked on the rendered objects.
"$py" - "$work" <<'PY'
import os, sys, yaml
work = sys.argv[1]
def load(name):
    with open(os.path.join(work, name)) as f:
        return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(f) if d}
docs = load("default.yaml")
sts = docs[("StatefulSet", "coffer")]
spec = sts["spec"]
pod = spec["template"]["spec"]
c = pod["containers"][0]
checks = {
    "3 replicas": spec["replicas"] == 3,
    "peers through the headless service": spec["serviceName"] == "coffer-headless",
    "required anti-affinity by host": pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == "kubernetes.io/hostname",
    "a PVC per pod": spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data",
    "PDB keeps quorum": docs[("PodDisruptionBudget", "coffer")]["spec"]["maxUnavailable"] == 1,
    "headless service publishes sealed pods": docs[("Service", "coffer-headless")]["spec"].get("publishNotReadyAddresses") is True
        and docs[("Service", "coffer-headless")]["spec"]["clusterIP"] == "None",
    "readiness = unsealed (200/429)": "429" in c["readinessProbe"]["exec"]["command"][-1],
    "liveness = process": "tcpSocket" in c["livenessProbe"],
    "TLS from a Secret": any(v.get("secret", {}).get("secretName") == "coffer-tls" for v in pod["volumes"]),
    "auto-join by the service name": "COFFER_RETRY_JOIN=\"[\\\"$peers:8444\\\"]\"" in c["command"][-1] and "peers=coffer-headless.default.svc.cluster.local" in c["command"][-1],
    "non-root": pod["securityContext"]["runAsNonRoot"] is True,
    "no default-off storage class": "storageClassName" not in spec["volumeClaimTemplates"][0]["spec"],
    "no HSM by default": "[hsm]" not in docs[("ConfigMap", "coffer-config")]["data"]["coffer.toml"],
}
hsm = load("hsm.yaml")
hc = hsm[("StatefulSet", "coffer")]["spec"]["template"]["spec"]["containers"][0]
checks["HSM variant: [hsm] section, PIN from a Secret, module mount"] = (
    "[hsm]" in hsm[("ConfigMap", "coffer-config")]["data"]["coffer.toml"]
    and any(e["name"] == "COFFER_HSM_PIN" for e in hc["env"])
    and any(m["mountPath"] == "/opt/pkcs11" for m in hc["volumeMounts"])
)
bad = [k for k, ok in checks.items() if not ok]
for k in checks:
    print(f"helm-test: {'ok  ' if k not in bad else 'FAIL'} {k}")
sys.exit(1 if bad else 0)
PY

# The start script is valid sh, and the config the chart renders is one the
# node accepts, with the per-pod overrides the script sets.
"$py" - "$work" <<'PY'
import os, sys, yaml
work = sys.argv[1]
for f in ("default", "hsm"):
    docs = [d for d in yaml.safe_load_all(open(os.path.join(work, f + ".yaml"))) if d]
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    open(os.path.join(work, f + ".toml"), "w").write(cm["data"]["coffer.toml"])
    open(os.path.join(work, f + ".sh"), "w").write(sts["spec"]["template"]["spec"]["containers"][0]["command"][-1])
PY
for f in default hsm; do sh -n "$work/$f.sh"; done
if [[ -x $bin ]]; then
  printf 'a-join-token-of-32-characters-xx\n' >"$work/join-token"
  chmod 600 "$work/join-token"
  for f in default hsm; do
    COFFER_NODE_ID=2 COFFER_RETRY_JOIN='["coffer-headless.default.svc.cluster.local:8444"]' \
      COFFER_JOIN_TOKEN_FILE=$work/join-token COFFER_HSM_PIN=1234 \
      "$bin" server --config "$work/$f.toml" --print-config >"$work/$f.effective"
    grep -q '^node_id = 2$' "$work/$f.effective"
  done
  say "the rendered node config is accepted by coffer (--print-config, with per-pod overrides)"
else
  say "no coffer binary at $bin: the rendered config was not checked"
fi
say "passed"
