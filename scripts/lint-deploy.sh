#!/usr/bin/env bash
# Checks the deployment files in deploy/ with tools from PyPI (installed once into a venv under
# target/): the Kubernetes manifests against the API schemas (strict: unknown fields refused),
# the compose file against the Compose Specification schema, YAML syntax and style, and the
# Dockerfile's shape (multi-stage, pinned bases, an unprivileged final user). Run by
# ./scripts/test.sh; usable alone.
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
echo "deploy files: ok"
