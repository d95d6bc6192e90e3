"""The Python side of dfar's benchmark harness (mirror of harness/harness.h).

Prints `#` metadata lines, a `#` column header and one fixed-width row per
case with a correctness column, nccl-tests style; `--json FILE` writes the
same data for benchmarks/report.py. finish() returns the exit code: 1 if any
row failed its correctness check.
"""
import argparse
import json
import os
import platform
import socket
import sys


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags():
    """avx2 / avx512f / avx512_bf16 / amx_bf16, those present (as the C++ harness says)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    found = [x for x in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if x in have]
                    return " ".join(found) or "none of avx2/avx512f/avx512_bf16/amx_bf16"
    except OSError:
        pass
    return "unknown"


def base_parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", help="write the results to this JSON file")
    p.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    return p


class Report:
    def __init__(self, bench, args):
        self.bench = bench
        self.args = args
        self.meta = {
            "bench": bench,
            "host": socket.gethostname(),
            "cpu": cpu_model(),
            "cpu_flags": cpu_flags(),
            "hardware_threads": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
            "ranks": 1,
            "python": sys.version.split()[0],
            "git_commit": os.environ.get("DFAR_GIT_COMMIT", "unknown"),
        }
        self.columns = []
        self.rows = []
        self.summary = {}
        self.notes = []
        self.failures = 0
        self.begun = False

    def add_meta(self, key, value):
        self.meta[key] = value

    def _print_meta(self):
        for k, v in self.meta.items():
            print("# %-18s %s" % (k, v if isinstance(v, str) else json.dumps(v)))

    def begin(self, columns):
        """columns: list of (name, width, precision)."""
        self.columns = columns
        if not self.begun:
            self._print_meta()
        self.begun = True
        print("#\n#" + "".join(" %*s" % (w, n) for n, w, _ in columns) + " %7s" % "correct", flush=True)

    def row(self, cells, correct):
        if not correct:
            self.failures += 1
        out, rec = [], {}
        for (name, width, prec), c in zip(self.columns, cells):
            if isinstance(c, float):
                out.append(" %*.*f" % (width, prec, c))
            else:
                out.append(" %*s" % (width, c))
            rec[name] = c
        rec["correct"] = bool(correct)
        self.rows.append(rec)
        print(" " + "".join(out) + " %7s" % ("OK" if correct else "FAIL"), flush=True)

    def add_summary(self, key, value):
        self.summary[key] = value

    def note(self, text):
        self.notes.append(text)
        print("# " + text, flush=True)

    def finish(self):
        if not self.begun:
            self._print_meta()
        for k, v in self.summary.items():
            print("# summary %-24s %s" % (k, json.dumps(v)))
        print("# %s: %d case(s) failed their correctness check" % (self.bench, self.failures), flush=True)
        if self.args.json:
            data = {"bench": self.bench, "meta": self.meta,
                    "columns": [c[0] for c in self.columns] + ["correct"], "rows": self.rows, "summary": self.summary,
                    "notes": self.notes, "failures": self.failures}
            tmp = self.args.json + ".tmp"
            with open(tmp, "w") as f:
                json.dump(data, f, indent=2)
                f.write("\n")
            os.replace(tmp, self.args.json)
        return 0 if self.failures == 0 else 1
