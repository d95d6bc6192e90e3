"""Merges benchmark JSON files of one benchmark, run one case per process,
into one file (benchmarks/run.sh: bench_step runs each case in its own
process, so that each runs under the OpenMP wait policy dfar picks for its
dtype).

Rows are concatenated in the order given; failures add up; notes are kept
once; summary objects are merged key by key. A metadata key whose value
differs between the files becomes "case: value; case: value" (the case is
each file's first row's), so the merged table still says what each row ran
under.

Usage: python3 benchmarks/merge_json.py OUT.json IN.json [IN.json ...]
Exit 2 if an input is missing, unreadable, or of another benchmark.
"""
import json
import os
import sys


def die(msg):
    print("merge_json: " + msg, file=sys.stderr)
    sys.exit(2)


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        die("%s: %s" % (path, e))


def merged_meta(docs):
    keys = []
    for d in docs:
        keys += [k for k in d["meta"] if k not in keys]
    meta = {}
    for k in keys:
        values = [d["meta"].get(k, "") for d in docs]
        if all(v == values[0] for v in values):
            meta[k] = values[0]
        else:
            names = [(d["rows"][0].get("case", "?") if d["rows"] else "?") for d in docs]
            meta[k] = "; ".join("%s: %s" % (n, v) for n, v in zip(names, values))
    return meta


def merge(docs):
    out = {"bench": docs[0]["bench"], "columns": docs[0]["columns"], "meta": merged_meta(docs),
           "rows": [], "failures": 0, "notes": [], "summary": {}}
    for d in docs:
        if d["bench"] != out["bench"]:
            die("cannot merge bench %r into %r" % (d["bench"], out["bench"]))
        out["rows"] += d["rows"]
        out["failures"] += d.get("failures", 0)
        out["notes"] += [n for n in d.get("notes", []) if n not in out["notes"]]
        for k, v in d.get("summary", {}).items():
            if isinstance(v, dict) and isinstance(out["summary"].get(k), dict):
                out["summary"][k].update(v)
            else:
                out["summary"][k] = v
    return out


def main(argv):
    if len(argv) < 3:
        die("usage: merge_json.py OUT.json IN.json [IN.json ...]")
    docs = [load(p) for p in argv[2:]]
    with open(argv[1] + ".tmp", "w") as f:
        json.dump(merge(docs), f, indent=1, sort_keys=True)
    os.replace(argv[1] + ".tmp", argv[1])


if __name__ == "__main__":
    main(sys.argv)
