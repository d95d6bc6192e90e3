"""JSON helpers of scripts/gpu_check.sh (standard library only: the GPU host
has a python3 with torch, nothing else is assumed).

  summarize.py metrics RUN_DIR STEPS          one training run from its metrics.jsonl
  summarize.py gtest FILE                      a gtest --gtest_output=json file
  summarize.py step OUT NAME STATUS SECONDS [DETAIL_JSON]
                                               records one check as OUT/steps/NAME.json
  summarize.py assemble OUT MODE               OUT/gpu_check.json from OUT/steps/*.json

`metrics` exits 1 (and says why) when the run did not train STEPS steps or a
loss is not finite; the median throughput skips the first quarter of the
steps (allocator warm-up, kernel selection).
"""
import glob
import json
import math
import os
import statistics
import sys
import time


def fail(message):
    print("summarize.py: " + message, file=sys.stderr)
    sys.exit(1)


def metrics(run_dir, steps):
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        fail(path + " is missing")
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            try:
                row = json.loads(line)
            except ValueError as e:
                fail("%s:%d: not JSON (%s)" % (path, number, e))
            if "loss" in row and "step" in row:
                rows.append(row)
    if len(rows) < steps:
        fail("%s: %d training steps recorded, expected %d" % (path, len(rows), steps))
    losses = [r["loss"] for r in rows]
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in losses):
        fail("%s: a loss is not finite: %s" % (path, losses))
    timed = rows[len(rows) // 4:] or rows

    def median(key):
        values = [r[key] for r in timed if isinstance(r.get(key), (int, float))]
        return statistics.median(values) if values else None

    def peak(key):
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        return max(values) if values else None

    return {
        "steps": len(rows),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "tokens_per_s": median("tokens_per_s"),
        "mfu": median("mfu"),
        "peak_memory_gb": peak("peak_memory_gb"),
    }


def gtest(path):
    if not os.path.exists(path):
        fail(path + " is missing (the test binary did not run to its end)")
    with open(path) as f:
        data = json.load(f)
    run = skipped = failed = 0
    names = []
    for suite in data.get("testsuites", []):
        for case in suite.get("testsuite", []):
            name = "%s.%s" % (suite.get("name"), case.get("name"))
            if case.get("result") == "SKIPPED" or case.get("status") == "NOTRUN":
                skipped += 1
                continue
            run += 1
            if case.get("failures"):
                failed += 1
                names.append(name)
    return {"run": run, "skipped": skipped, "failed": failed, "failed_names": names}


def step(out, name, status, seconds, detail=None):
    os.makedirs(os.path.join(out, "steps"), exist_ok=True)
    record = {"name": name, "status": status, "seconds": round(float(seconds), 1)}
    if detail:
        record["detail"] = json.loads(detail)
    order = len(glob.glob(os.path.join(out, "steps", "*.json")))
    with open(os.path.join(out, "steps", "%02d-%s.json" % (order, name)), "w") as f:
        json.dump(record, f, indent=1)


def assemble(out, mode):
    steps = []
    for path in sorted(glob.glob(os.path.join(out, "steps", "*.json"))):
        with open(path) as f:
            steps.append(json.load(f))
    version = ""
    version_path = os.path.join(out, "version.txt")
    if os.path.exists(version_path):
        with open(version_path) as f:
            version = f.read().strip()
    result = {
        "bench": "gpu_check",
        "mode": mode,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "versions": version.splitlines(),
        "steps": steps,
        "ok": all(s["status"] in ("ok", "skipped") for s in steps),
    }
    with open(os.path.join(out, "gpu_check.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


def main(argv):
    if len(argv) < 2:
        fail(__doc__)
    command = argv[1]
    if command == "metrics" and len(argv) == 4:
        print(json.dumps(metrics(argv[2], int(argv[3]))))
    elif command == "gtest" and len(argv) == 3:
        print(json.dumps(gtest(argv[2])))
    elif command == "step" and len(argv) in (6, 7):
        step(argv[2], argv[3], argv[4], argv[5], argv[6] if len(argv) == 7 else None)
    elif command == "assemble" and len(argv) == 4:
        result = assemble(argv[2], argv[3])
        bad = [s["name"] for s in result["steps"] if s["status"] not in ("ok", "skipped")]
        print("gpu_check: %d checks, %s" % (len(result["steps"]), "all ok" if not bad else "FAILED: " + ", ".join(bad)))
        sys.exit(0 if result["ok"] else 1)
    else:
        fail("bad arguments: %s\n%s" % (" ".join(argv[1:]), __doc__))


if __name__ == "__main__":
    main(sys.argv)
