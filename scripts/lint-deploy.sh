#!/usr/bin/env bash
# Checks the deployment files in deploy/ with tools from PyPI (installed once into a venv under
# target/): the Kubernetes manifests against the API schemas (strict: unknown fields refused),
# the compose file against the Compose Specification schema, YAML syntax and style, and the
# Dockerfile's shape (multi-stage, pinned bases, an unprivileged final user), that a draining
# pod's liveness probe and termination grace period outlast its drain, and the Grafana
# dashboard: valid JSON whose queries name only series the engine declares
# (crates/server/src/metrics/names.rs; the observability test checks /metrics renders them after
# a call). Run by ./scripts/test.sh; usable alone.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${DEPLOY_LINT_VENV:-target/deploy-lint-venv}
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    kubernetes-validate==1.37.0 check-jsonschema==0.39.0 yamllint==1.38.0 dockerfile-parse==2.0.1
fi

"$venv/bin/yamllint" -d '{extends: relaxed, rules: {line-length: {max: 110}}}' deploy/
"$venv/bin/kubernetes-validate" --strict --quiet -k 1.31.0 deploy/k8s/*.yaml
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml
"$venv/bin/python" - deploy/Dockerfile <<'PY'
import sys
from dockerfile_parse import DockerfileParser

path = sys.argv[1]
d = DockerfileParser(path=path)
problems = []
froms = [i for i in d.structure if i["instruction"] == "FROM"]
if len(froms) < 2:
    problems.append("not a multi-stage build")
for f in froms:
    image = f["value"].split()[0]
    if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
        problems.append(f"base image {image!r} is not pinned to a tag")
final = [i for i in d.structure if i["startline"] > froms[-1]["startline"]]
users = [i["value"].strip() for i in final if i["instruction"] == "USER"]
if not users or users[-1] in ("root", "0"):
    problems.append("the final stage does not run as an unprivileged USER")
if not any(i["instruction"] in ("ENTRYPOINT", "CMD") for i in final):
    problems.append("the final stage has no ENTRYPOINT/CMD")
for i in d.structure:
    if i["instruction"] == "ADD" and "://" in i["value"]:
        problems.append(f"line {i['startline'] + 1}: ADD of a URL (use a build stage)")
if problems:
    sys.exit(f"{path}: " + "; ".join(problems))
print(f"{path}: ok ({len(froms)} stages, final user {users[-1]})")
PY
"$venv/bin/python" - deploy/k8s/switchboard.yaml <<'PY'
# A draining pod must never be killed while it may still be finishing calls: the liveness
# failures it takes to kill, and the termination grace period, must both outlast the drain
# (drain_grace_s + drain_timeout_s, as the container's environment sets them).
import sys, yaml

path = sys.argv[1]
problems = []
for doc in yaml.safe_load_all(open(path)):
    if not doc or doc.get("kind") != "Deployment":
        continue
    pod = doc["spec"]["template"]["spec"]
    for c in pod["containers"]:
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        try:
            drain = int(env["SWITCHBOARD_SERVER__DRAIN_GRACE_S"]) + int(
                env["SWITCHBOARD_SERVER__DRAIN_TIMEOUT_S"])
        except (KeyError, TypeError, ValueError):
            problems.append(f"{c['name']}: drain grace and timeout not both set in env")
            continue
        live = c.get("livenessProbe")
        if live:
            kill_after = live.get("periodSeconds", 10) * live.get("failureThreshold", 3)
            if kill_after <= drain:
                problems.append(
                    f"{c['name']}: liveness kills after {kill_after} s, within the {drain} s drain")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if grace <= drain:
            problems.append(f"terminationGracePeriodSeconds {grace} is not longer than the {drain} s drain")
if problems:
    sys.exit(f"{path}: " + "; ".join(problems))
print(f"{path}: ok (probes and grace period outlast the drain)")
PY
python3 - deploy/grafana/switchboard.json crates/server/src/metrics/names.rs <<'PY'
import json, re, sys

dashboard_path, names_path = sys.argv[1:3]
with open(dashboard_path) as f:
    dashboard = json.load(f)
declared = set(re.findall(r'"(switchboard_[a-z0-9_]+)"', open(names_path).read()))

def exprs(v):
    if isinstance(v, dict):
        if isinstance(v.get("expr"), str):
            yield v["expr"]
        for x in v.values():
            yield from exprs(x)
    elif isinstance(v, list):
        for x in v:
            yield from exprs(x)

used = set()
for e in exprs(dashboard):
    used.update(re.findall(r"switchboard_[a-z0-9_]+", e))
unknown = sorted(
    n for n in used
    if n not in declared and re.sub(r"_(bucket|sum|count)$", "", n) not in declared
)
if not used:
    sys.exit(f"{dashboard_path}: no switchboard_ series in any query")
if unknown:
    sys.exit(f"{dashboard_path}: series the engine does not declare: {', '.join(unknown)}")
print(f"{dashboard_path}: ok ({len(used)} series, all declared)")
PY
echo "deploy files: ok"
