"""Renders the Coffer chart without helm, for the tests on machines where
helm cannot be installed (no registry beyond Debian's, PyPI and crates.io).

It understands exactly the template subset the chart uses and refuses
anything else, so a template that would need real helm fails here loudly
instead of rendering wrong:

    {{ .Values.a.b }}  {{ .Release.Name }}  {{ .Release.Namespace }}
    {{ .Chart.AppVersion }}  {{ .Values.x | quote }}
    {{ toYaml .Values.x | nindent N }}
    {{ if .Values.x }} ... {{ end }}      (nestable; "-" trims whitespace)

    python render.py CHART_DIR [--name coffer] [--namespace default] [--set a.b=v ...]

prints the manifests as one multi-document YAML stream, like `helm template`.
"""

import argparse
import json
import os
import re
import sys

import yaml

ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


class TemplateError(Exception):
    pass


def lookup(ctx, path):
    node = ctx
    for part in path.lstrip(".").split("."):
        if not isinstance(node, dict) or part not in node:
            raise TemplateError(f"no value .{path.lstrip('.')}")
        node = node[part]
    return node


def scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    return str(v)


def evaluate(expr, ctx):
    m = re.fullmatch(r"(\.[A-Za-z][\w.]*)", expr)
    if m:
        return scalar(lookup(ctx, m.group(1)))
    m = re.fullmatch(r"(\.[A-Za-z][\w.]*)\s*\|\s*quote", expr)
    if m:
        return json.dumps(scalar(lookup(ctx, m.group(1))))
    m = re.fullmatch(r"toYaml\s+(\.[A-Za-z][\w.]*)\s*\|\s*nindent\s+(\d+)", expr)
    if m:
        text = yaml.safe_dump(lookup(ctx, m.group(1)), default_flow_style=False).rstrip("\n")
        pad = " " * int(m.group(2))
        return "\n" + "\n".join(pad + line for line in text.split("\n"))
    raise TemplateError(f"unsupported template action {{{{ {expr} }}}} (render.py knows a subset)")


def render(text, ctx):
    out = []
    pieces = []  # ("text", s) / ("action", expr)
    pos = 0
    for m in ACTION.finditer(text):
        before = text[pos:m.start()]
        if m.group(1):
            before = before.rstrip()
        pieces.append(["text", before])
        pieces.append(["action", m.group(2), bool(m.group(3))])
        pos = m.end()
    pieces.append(["text", text[pos:]])
    for i, p in enumerate(pieces):
        if p[0] == "action" and p[2] and i + 1 < len(pieces):
            pieces[i + 1][1] = pieces[i + 1][1].lstrip()
    stack = [True]
    for p in pieces:
        if p[0] == "text":
            if all(stack):
                out.append(p[1])
            continue
        expr = p[1]
        m = re.fullmatch(r"if\s+(\.[A-Za-z][\w.]*)", expr)
        if m:
            stack.append(bool(lookup(ctx, m.group(1))) if all(stack) else False)
        elif expr == "end":
            if len(stack) == 1:
                raise TemplateError("{{ end }} without {{ if }}")
            stack.pop()
        elif all(stack):
            out.append(evaluate(expr, ctx))
    if len(stack) != 1:
        raise TemplateError("{{ if }} without {{ end }}")
    return "".join(out)


def set_value(values, assignment):
    key, _, raw = assignment.partition("=")
    node = values
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""


def main():
    p = argparse.ArgumentParser()
    p.add_argument("chart")
    p.add_argument("--name", default="coffer")
    p.add_argument("--namespace", default="default")
    p.add_argument("--set", action="append", default=[])
    a = p.parse_args()
    with open(os.path.join(a.chart, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    with open(os.path.join(a.chart, "values.yaml")) as f:
        values = yaml.safe_load(f)
    for s in a.set:
        set_value(values, s)
    ctx = {
        "Values": values,
        "Release": {"Name": a.name, "Namespace": a.namespace},
        "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]},
    }
    tdir = os.path.join(a.chart, "templates")
    docs = []
    for name in sorted(os.listdir(tdir)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(tdir, name)) as f:
            try:
                rendered = render(f.read(), ctx)
            except TemplateError as e:
                sys.exit(f"render.py: templates/{name}: {e}")
        docs.append(f"---\n# Source: {chart['name']}/templates/{name}\n{rendered.strip()}\n")
    sys.stdout.write("".join(docs))


if __name__ == "__main__":
    main()
