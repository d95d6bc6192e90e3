#!/usr/bin/env python3
"""Checks dfar's Kubeflow MPIJob manifests without a cluster.

Every MPIJob document in the given YAML files (default: cluster/k8s/*.yaml)
is validated against tests/k8s/mpijob-v2beta1.schema.json and against the
rules that dfar needs and a schema cannot state (dfar_rules below). Each
failure is printed as FILE: document N: JSON-PATH: message (N counts every
document in the file from 0), and the exit code is 1 if there is any.

The schema runs through the `jsonschema` package where it is importable and
through the small validator below otherwise; --self-test checks both on
manifests broken on purpose. Needs PyYAML (Debian: python3-yaml); exits 77
without it.
"""
import argparse
import copy
import glob
import json
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA_PATH = os.path.join(REPO, "tests", "k8s", "mpijob-v2beta1.schema.json")
GPU = "nvidia.com/gpu"
MULTI_NODE_ANNOTATION = "dfar/multi-node"
NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
MISSING = "required but missing"
NOT_ALLOWED = "not a field here (a typo?)"


def json_path(parts):
    """('spec', 'x', 0, 'a/b') -> $.spec.x[0]["a/b"]"""
    text = "$"
    for p in parts:
        if isinstance(p, int):
            text += f"[{p}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p):
            text += "." + p
        else:
            text += json.dumps([p])
    return text


# ---- the built-in subset of JSON Schema -------------------------------------------
# Only what the schema file uses. An unknown keyword is an error, not ignored,
# so that the schema cannot come to rely on something this validator skips.

ANNOTATIONS = {"$schema", "$id", "$comment", "$defs", "title", "description"}
KEYWORDS = ANNOTATIONS | {"$ref", "type", "const", "enum", "pattern", "minimum", "maximum",
                          "required", "properties", "additionalProperties", "items", "minItems"}


class SchemaError(Exception):
    pass


def _is_type(value, name):
    if name == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    if name not in kinds:
        raise SchemaError(f"unknown type {name!r}")
    return isinstance(value, kinds[name])


def _same(a, b):
    """JSON equality: true is not 1."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _resolve(root, ref):
    if not ref.startswith("#/"):
        raise SchemaError(f"only local $ref is supported, not {ref!r}")
    node = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _scalar_checks(node, value, path, out):
    if "type" in node:
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        if not any(_is_type(value, t) for t in types):
            out.append((path, f"{value!r} is not of type {' or '.join(types)}"))
    if "const" in node and not _same(value, node["const"]):
        out.append((path, f"{value!r} is not {node['const']!r}"))
    if "enum" in node and not any(_same(value, e) for e in node["enum"]):
        out.append((path, f"{value!r} is not one of {node['enum']}"))
    if isinstance(value, str) and "pattern" in node and not re.search(node["pattern"], value):
        out.append((path, f"{value!r} does not match {node['pattern']!r}"))
    if _is_type(value, "number"):
        if "minimum" in node and value < node["minimum"]:
            out.append((path, f"{value} is less than {node['minimum']}"))
        if "maximum" in node and value > node["maximum"]:
            out.append((path, f"{value} is more than {node['maximum']}"))


def _validate(node, value, path, root, out):
    if node is True:
        return
    if node is False:
        out.append((path, NOT_ALLOWED))
        return
    unknown = set(node) - KEYWORDS
    if unknown:
        raise SchemaError(f"keyword(s) {sorted(unknown)} at {json_path(path)} are not implemented")
    if "$ref" in node:
        _validate(_resolve(root, node["$ref"]), value, path, root, out)
    _scalar_checks(node, value, path, out)
    if isinstance(value, dict):
        props = node.get("properties", {})
        out.extend((path + (k,), MISSING) for k in node.get("required", []) if k not in value)
        for key, item in value.items():
            if key in props:
                _validate(props[key], item, path + (key,), root, out)
            elif "additionalProperties" in node:
                _validate(node["additionalProperties"], item, path + (key,), root, out)
    if isinstance(value, list):
        if "minItems" in node and len(value) < node["minItems"]:
            out.append((path, f"has {len(value)} item(s), fewer than {node['minItems']}"))
        if "items" in node:
            for i, item in enumerate(value):
                _validate(node["items"], item, path + (i,), root, out)


def check_keywords(node, where="#"):
    """Raises SchemaError if any subschema uses a keyword that _validate lacks."""
    if isinstance(node, bool):
        return
    unknown = set(node) - KEYWORDS
    if unknown:
        raise SchemaError(f"keyword(s) {sorted(unknown)} at {where} are not implemented")
    for key in ("properties", "$defs"):
        for name, sub in node.get(key, {}).items():
            check_keywords(sub, f"{where}/{key}/{name}")
    for key in ("additionalProperties", "items"):
        if key in node:
            check_keywords(node[key], f"{where}/{key}")


def builtin_validator(schema):
    return "built-in subset", lambda doc: _dedupe(_run_builtin(schema, doc))


def _run_builtin(schema, doc):
    out = []
    _validate(schema, doc, (), schema, out)
    return out


def jsonschema_validator(schema):
    """None where the jsonschema package is not importable."""
    try:
        import jsonschema
    except ImportError:
        return None
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)

    def run(doc):
        out = []
        for e in validator.iter_errors(doc):
            path = tuple(e.absolute_path)
            # Name the missing or unexpected field in the path, as the built-in one does.
            if e.validator == "required":
                out.extend((path + (k,), MISSING) for k in e.validator_value if k not in e.instance)
            elif e.validator == "additionalProperties" and e.validator_value is False:
                props = e.schema.get("properties", {})
                out.extend((path + (k,), NOT_ALLOWED) for k in e.instance if k not in props)
            else:
                out.append((path, e.message))
        return _dedupe(out)

    try:
        from importlib.metadata import version
        name = f"jsonschema {version('jsonschema')}"
    except Exception:  # the version is only for the report
        name = "jsonschema"
    return name, run


def _dedupe(failures):
    return sorted(set(failures), key=lambda f: (json_path(f[0]), f[1]))


# ---- dfar's rules ----------------------------------------------------------------


def get(node, *keys):
    """node[k0][k1]...; None where a key is missing or a level has the wrong type."""
    for k in keys:
        if isinstance(k, int):
            node = node[k] if isinstance(node, list) and -len(node) <= k < len(node) else None
        else:
            node = node.get(k) if isinstance(node, dict) else None
    return node


def containers(doc, role, kind="containers"):
    """(path, container) for each container of a role's pod template."""
    base = ("spec", "mpiReplicaSpecs", role, "template", "spec", kind)
    items = get(doc, *base)
    if not isinstance(items, list):
        return []
    return [(base + (i,), c) for i, c in enumerate(items) if isinstance(c, dict)]


def gpu_count(container):
    value = get(container, "resources", "limits", GPU)
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def rank_container(doc):
    """The worker container that runs the ranks: the one with GPUs, else the first."""
    cs = containers(doc, "Worker")
    with_gpus = [pc for pc in cs if gpu_count(pc[1]) > 0]
    return (with_gpus or cs or [(None, None)])[0]


def is_multi_node(doc):
    replicas = get(doc, "spec", "mpiReplicaSpecs", "Worker", "replicas")
    documented = get(doc, "metadata", "annotations", MULTI_NODE_ANNOTATION) == "true"
    return documented or (isinstance(replicas, int) and replicas > 1)


def rule_openmpi(doc):
    impl = get(doc, "spec", "mpiImplementation")
    if impl not in (None, "OpenMPI"):
        yield (("spec", "mpiImplementation"),
               f"is {impl}: launch/*.sh run OpenMPI's mpirun and read 'host slots=N' hostfile lines")


def rule_slots_match_gpus(doc):
    slots = get(doc, "spec", "slotsPerWorker")
    gpus = sum(gpu_count(c) for _, c in containers(doc, "Worker"))
    if gpus and isinstance(slots, int) and slots != gpus:
        yield (("spec", "slotsPerWorker"),
               f"is {slots} but a worker has {gpus} GPU(s) ({GPU} limits): dfar runs one rank per slot "
               f"and gives local rank k GPU k, so the two must be equal")


def rule_multi_node_rdma(doc):
    """NCCL between nodes uses InfiniBand/RoCE only with an RDMA device and
    memory pinning; without them it falls back to TCP sockets, silently."""
    if not is_multi_node(doc):
        return
    path, c = rank_container(doc)
    if c is None:
        return
    limits = get(c, "resources", "limits") or {}
    networks = get(doc, "spec", "mpiReplicaSpecs", "Worker", "template", "metadata", "annotations",
                   NETWORKS_ANNOTATION)
    if not any(str(k).startswith("rdma/") for k in limits) and not networks:
        yield (path + ("resources", "limits"),
               "a multi-node job needs an RDMA device: an rdma/... limit (e.g. rdma/hca_shared_devices_a) "
               f"or an SR-IOV network in the pod annotation {NETWORKS_ANNOTATION}; else NCCL uses TCP")
    caps = get(c, "securityContext", "capabilities", "add") or []
    if not {"IPC_LOCK", "CAP_IPC_LOCK"} & set(caps):
        yield (path + ("securityContext", "capabilities", "add"),
               "a multi-node job needs IPC_LOCK so that NCCL can pin memory for RDMA")


def rule_non_root(doc):
    for role in ("Launcher", "Worker"):
        pod_path = ("spec", "mpiReplicaSpecs", role, "template", "spec", "securityContext")
        pod_sc = get(doc, *pod_path) or {}
        for path, c in containers(doc, role) + containers(doc, role, "initContainers"):
            sc = c.get("securityContext") or {}
            for key in ("runAsNonRoot", "runAsUser"):
                where = path + ("securityContext", key) if key in sc else pod_path + (key,)
                value = sc.get(key, pod_sc.get(key))
                if key == "runAsNonRoot" and value is not True:
                    yield (where, f"{c.get('name')}: must be true (cluster/README.md: all pods run as non-root)")
                if key == "runAsUser" and value == 0:
                    yield (where, f"{c.get('name')}: runs as root")


def rule_limits(doc):
    for role in ("Launcher", "Worker"):
        for path, c in containers(doc, role) + containers(doc, role, "initContainers"):
            for resource in ("cpu", "memory"):
                if get(c, "resources", "limits", resource) is None:
                    yield (path + ("resources", "limits", resource), f"{c.get('name')}: no {resource} limit")


LAUNCH_SCRIPT = re.compile(r"(^|/)launch/(train|eval)\.sh$")


def rule_launcher_runs_mpirun(doc):
    """launch/train.sh and launch/eval.sh start dfar through mpirun
    (tests/cli/launch_cli.sh checks the command they build)."""
    for path, c in containers(doc, "Launcher")[:1]:
        words = [w for w in (c.get("command") or []) + (c.get("args") or []) if isinstance(w, str)]
        tokens = " ".join(words).split()
        via_script = any(LAUNCH_SCRIPT.search(t) for t in tokens)
        direct = any(t.endswith("mpirun") for t in tokens) and any(re.search(r"(^|/)dfar$", t) for t in tokens)
        if not (via_script or direct):
            yield (path + ("command",),
                   "the launcher must run dfar through mpirun: launch/train.sh, launch/eval.sh or 'mpirun ... dfar'")


RULES = (rule_openmpi, rule_slots_match_gpus, rule_multi_node_rdma, rule_non_root, rule_limits,
         rule_launcher_runs_mpirun)


def check_doc(doc, validate):
    failures = list(validate(doc))
    for rule in RULES:
        failures.extend(rule(doc))
    return _dedupe(failures)


# ---- the manifests ---------------------------------------------------------------


def load_schema():
    with open(SCHEMA_PATH) as f:
        return json.load(f)


def validators(schema):
    """Every available validator: jsonschema first (where importable), then the built-in one."""
    check_keywords(schema)  # the built-in one must understand all of it
    return [v for v in (jsonschema_validator(schema), builtin_validator(schema)) if v]


def check_files(paths, validate):
    import yaml

    failures, jobs = [], 0
    for path in paths:
        inside = os.path.abspath(path).startswith(REPO + os.sep)
        shown = os.path.relpath(path, REPO) if inside and os.path.isabs(path) else path
        try:
            with open(path) as f:
                docs = list(yaml.safe_load_all(f))
        except (OSError, yaml.YAMLError) as e:
            failures.append(f"{shown}: cannot read: {e}")
            continue
        for i, doc in enumerate(docs):
            if not isinstance(doc, dict) or doc.get("kind") != "MPIJob":
                continue
            jobs += 1
            failures += [f"{shown}: document {i}: {json_path(p)}: {m}" for p, m in check_doc(doc, validate)]
    if jobs == 0:
        failures.append(f"no MPIJob document in {' '.join(paths) or '(no files)'}")
    return jobs, failures


# ---- self-test: manifests broken on purpose --------------------------------------


def good_job():
    """A small multi-node GPU job that passes every check."""
    pod_sc = {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000}
    launcher = {"name": "launcher", "image": "r.example/dfar:1", "command": ["/opt/dfar/launch/train.sh"],
                "env": [{"name": "NP", "value": "16"}],
                "resources": {"limits": {"cpu": "2", "memory": "4Gi"}}}
    worker = {"name": "worker", "image": "r.example/dfar:1", "command": ["/usr/sbin/sshd", "-De"],
              "securityContext": {"capabilities": {"add": ["IPC_LOCK"]}},
              "resources": {"limits": {GPU: 8, "rdma/hca_shared_devices_a": 1, "cpu": "96", "memory": "1000Gi"}}}
    return {
        "apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob", "metadata": {"name": "t"},
        "spec": {"slotsPerWorker": 8, "sshAuthMountPath": "/home/mpiuser/.ssh",
                 "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": 3},
                 "mpiReplicaSpecs": {
                     "Launcher": {"replicas": 1, "restartPolicy": "OnFailure",
                                  "template": {"spec": {"securityContext": dict(pod_sc), "containers": [launcher]}}},
                     "Worker": {"replicas": 2,
                                "template": {"spec": {"securityContext": dict(pod_sc), "containers": [worker]}}}}},
    }


L = ("spec", "mpiReplicaSpecs", "Launcher")
W = ("spec", "mpiReplicaSpecs", "Worker")
LC = L + ("template", "spec", "containers", 0)
WC = W + ("template", "spec", "containers", 0)


def edit(path, value=None, delete=False):
    def apply(doc):
        node = get(doc, *path[:-1])
        if delete:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return apply


def single_node(doc):
    get(doc, *W)["replicas"] = 1
    del get(doc, *WC, "resources", "limits")["rdma/hca_shared_devices_a"]
    del get(doc, *WC)["securityContext"]


def rdma_by_network(doc):
    del get(doc, *WC, "resources", "limits")["rdma/hca_shared_devices_a"]
    get(doc, *W, "template")["metadata"] = {"annotations": {NETWORKS_ANNOTATION: "sriov-ib"}}


def documented_multi_node(doc):
    single_node(doc)
    doc["metadata"]["annotations"] = {MULTI_NODE_ANNOTATION: "true"}


# (name, change, the path that must be rejected; None: must be accepted)
CASES = [
    ("valid", lambda d: None, None),
    ("single node needs no RDMA", single_node, None),
    ("RDMA through an SR-IOV network", rdma_by_network, None),
    ("missing Launcher", edit(L, delete=True), L),
    ("missing Worker", edit(W, delete=True), W),
    ("Launcher replicas 2", edit(L + ("replicas",), 2), L + ("replicas",)),
    ("Launcher replicas true", edit(L + ("replicas",), True), L + ("replicas",)),
    ("Worker replicas 0", edit(W + ("replicas",), 0), W + ("replicas",)),
    ("slotsPerWorker 4, 8 GPUs", edit(("spec", "slotsPerWorker"), 4), ("spec", "slotsPerWorker")),
    ("slotsPerWorker missing", edit(("spec", "slotsPerWorker"), delete=True), ("spec", "slotsPerWorker")),
    ("typo slotPerWorker", edit(("spec", "slotPerWorker"), 8), ("spec", "slotPerWorker")),
    ("wrong apiVersion", edit(("apiVersion",), "kubeflow.org/v1"), ("apiVersion",)),
    ("no metadata.name", edit(("metadata", "name"), delete=True), ("metadata", "name")),
    ("bad cleanPodPolicy", edit(("spec", "runPolicy", "cleanPodPolicy"), "Always"),
     ("spec", "runPolicy", "cleanPodPolicy")),
    ("restartPolicy Always", edit(L + ("restartPolicy",), "Always"), L + ("restartPolicy",)),
    ("mpiImplementation Intel", edit(("spec", "mpiImplementation"), "Intel"), ("spec", "mpiImplementation")),
    ("no containers", edit(L + ("template", "spec", "containers"), []), L + ("template", "spec", "containers")),
    ("container without image", edit(WC + ("image",), delete=True), WC + ("image",)),
    ("container without name", edit(LC + ("name",), delete=True), LC + ("name",)),
    ("env value not a string", edit(LC + ("env", 0, "value"), 16), LC + ("env", 0, "value")),
    ("bad quantity", edit(LC + ("resources", "limits", "memory"), "4 GB"), LC + ("resources", "limits", "memory")),
    ("multi-node without IPC_LOCK", edit(WC + ("securityContext",), delete=True),
     WC + ("securityContext", "capabilities", "add")),
    ("multi-node without RDMA", edit(WC + ("resources", "limits", "rdma/hca_shared_devices_a"), delete=True),
     WC + ("resources", "limits")),
    ("documented multi-node on 1 worker", documented_multi_node, WC + ("securityContext", "capabilities", "add")),
    ("worker runs as root", edit(WC + ("securityContext", "runAsUser"), 0), WC + ("securityContext", "runAsUser")),
    ("no runAsNonRoot", edit(L + ("template", "spec", "securityContext", "runAsNonRoot"), delete=True),
     L + ("template", "spec", "securityContext", "runAsNonRoot")),
    ("no memory limit", edit(WC + ("resources", "limits", "memory"), delete=True),
     WC + ("resources", "limits", "memory")),
    ("launcher runs dfar without mpirun", edit(LC + ("command",), ["dfar", "train"]), LC + ("command",)),
]


def self_test(checkers):
    names = ", ".join(name for name, _ in checkers)
    print(f"# self-test of the schema and rules with: {names}")
    print(f"# {'result':<7} {'case':<36} expected failure path")
    wrong = 0
    for name, change, want in CASES:
        doc = good_job()
        change(doc)
        results = {n: check_doc(copy.deepcopy(doc), v) for n, v in checkers}
        problems = []
        for n, failures in results.items():
            paths = {p for p, _ in failures}
            if want is None and failures:
                problems.append(f"{n} rejected it: " + "; ".join(f"{json_path(p)}: {m}" for p, m in failures))
            elif want is not None and tuple(want) not in paths:
                problems.append(f"{n} did not reject {json_path(want)}; got: {sorted(map(json_path, paths))}")
        # The validators must agree on where each manifest is wrong.
        if len({tuple(sorted({p for p, _ in f})) for f in results.values()}) > 1:
            problems.append("the validators disagree: " + repr({n: sorted({json_path(p) for p, _ in f})
                                                               for n, f in results.items()}))
        wrong += bool(problems)
        expected = "accepted" if want is None else json_path(want)
        print(f"  {'#wrong' if problems else 'ok':<7} {name:<36} {expected}")
        for p in problems:
            print(f"    {p}")
    try:
        check_keywords({"type": "object", "properties": {"a": {"type": "string", "minLength": 1}}})
        wrong += 1
        print(f"  {'#wrong':<7} {'unknown schema keyword refused':<36} accepted")
    except SchemaError:
        print(f"  {'ok':<7} {'unknown schema keyword refused':<36} SchemaError")
    print(f"# {len(CASES) + 1 - wrong} of {len(CASES) + 1} self-test cases ok")
    return wrong == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="YAML files (default: cluster/k8s/*.yaml)")
    ap.add_argument("--self-test", action="store_true", help="check the checks on broken manifests, then exit")
    args = ap.parse_args()
    try:
        import yaml  # noqa: F401
    except ImportError:
        print("skipped: python3 has no 'yaml' module (Debian: python3-yaml)")
        return 77
    schema = load_schema()
    checkers = validators(schema)
    if args.self_test:
        return 0 if self_test(checkers) else 1
    files = args.files or sorted(glob.glob(os.path.join(REPO, "cluster", "k8s", "*.yaml")))
    name, validate = checkers[0]
    jobs, failures = check_files(files, validate)
    for f in failures:
        print(f)
    print(f"# {jobs} MPIJob document(s) in {len(files)} file(s), schema by {name}: "
          f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
