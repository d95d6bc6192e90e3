#!/usr/bin/env python3
"""Writes docs/results.md (and its loss-curve PNGs) from one `make experiment` run.

Usage: experiment_report.py --run runs/experiment --out docs/results.md [--readme README.md]

Reads only what the run wrote (scripts/experiment.sh): state/plan,
state/machine.txt, state/<phase>.done (seconds, finish time), the
eval-*/eval_report.json files and the train-*/metrics.jsonl files. Every
figure in the page comes from them; nothing is typed in, except the paper's
own figures, which are labelled as the paper's.

Statistics (docs/metrics.md has the per-report ones):
- across seeds: the mean, the sample standard deviation, the range, and a
  95% Student-t interval of the mean (t quantile with n-1 degrees of
  freedom; it says how much the seed moves the result, not how much the
  test set does);
- per seed: the report's Wilson interval over the test examples;
- McNemar: exact two-sided test on the paired per-example outcomes of L+R
  and L of the same seed (the reports' `examples.correct`).
With --readme, the block between "<!-- results:begin -->" and
"<!-- results:end -->" in that file is replaced by the headline row.
Exits 1 with the file's name when a report is missing or malformed.
"""
import argparse
import glob
import json
import math
import os
import re
import statistics
import sys

# Two-sided 95% Student-t quantiles t(0.975, df), df = 1..30 (standard table).
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
SETS = [("dfar", "DFAR test"), ("ethos", "ETHOS (cross-dataset)"), ("heldout", "held-out (hand-written)")]
ROWS = [("pretrained", "pre-trained"), ("l", "L"), ("lr", "L+R")]
# The seed paper's accuracies on DFAR's test set (Kabir et al., ICPR 2024, QLoRA, 10 epochs).
PAPER = [("Llama-2-7B", "62.8%", "89.4%"), ("Mistral-7B", "47.4%", "82.2%")]


def fail(msg):
    sys.exit("experiment_report: " + msg)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail("%s: %s" % (path, e))


def read_plan(run):
    path = os.path.join(run, "state", "plan")
    try:
        text = open(path).read().strip()
    except OSError as e:
        fail("%s: %s (not an experiment run dir?)" % (path, e))
    plan, key = {}, None
    for tok in text.split(" "):  # key=value pairs; a value may hold spaces (seeds).
        if "=" in tok and re.match(r"^[a-z_0-9]+=", tok):
            key, val = tok.split("=", 1)
            plan[key] = val
        elif key:
            plan[key] += " " + tok
    plan["seed_list"] = [int(s) for s in plan.get("seeds", "").split()]
    return plan


def report_dir(run, row, seed, data_set):
    if row == "pretrained":
        return os.path.join(run, "eval-pretrained-%s" % data_set)
    return os.path.join(run, "eval-%s-seed%d-%s" % (row, seed, data_set))


def load_reports(run, plan):
    """{(row, seed, set): report}; the pre-trained row has seed 0."""
    reports = {}
    for data_set, _ in SETS:
        reports[("pretrained", 0, data_set)] = read_json(os.path.join(report_dir(run, "pretrained", 0, data_set),
                                                                      "eval_report.json"))
        for row in ("l", "lr"):
            for seed in plan["seed_list"]:
                path = os.path.join(report_dir(run, row, seed, data_set), "eval_report.json")
                reports[(row, seed, data_set)] = read_json(path)
    for key, r in reports.items():
        if r.get("format") != "dfar-eval-report":
            fail("%s: not a dfar eval report" % (report_dir(run, key[0], key[1], key[2])))
    return reports


def mcnemar_exact(a, b):
    """Two-sided exact McNemar p on paired booleans; (p, only_a, only_b)."""
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    n = only_a + only_b
    if n == 0:
        return 1.0, 0, 0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1))
    return min(1.0, 2.0 * tail / 2 ** n), only_a, only_b


def seed_stats(values):
    """mean, sd, (lo, hi) 95% t-interval, min, max over seeds."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return mean, None, None, mean, mean
    sd = statistics.stdev(values)
    half = T975[min(n - 1, len(T975)) - 1] * sd / math.sqrt(n)
    return mean, sd, (mean - half, mean + half), min(values), max(values)


def pct(v):
    return "%.1f%%" % (100 * v)


def pct_cell(values):
    mean, sd, ci, lo, hi = seed_stats(values)
    if sd is None:
        return pct(mean)
    return "%s ± %.1f [%.1f, %.1f]" % (pct(mean), 100 * sd, 100 * ci[0], 100 * ci[1])


def wilson_cell(rep):
    m = rep["metrics"]
    lo, hi = m["accuracy_ci95"]
    return "%s [%.1f, %.1f]" % (pct(m["accuracy"]), 100 * lo, 100 * hi)


def accuracy(rep):
    return rep["metrics"]["accuracy"]


def row_values(reports, plan, row, data_set, fn):
    if row == "pretrained":
        return [fn(reports[("pretrained", 0, data_set)])]
    return [fn(reports[(row, s, data_set)]) for s in plan["seed_list"]]


def headline_table(reports, plan):
    head = "| row | " + " | ".join("%s accuracy" % label for _, label in SETS) + " | DFAR macro F1 | DFAR unparseable |"
    lines = [head, "|" + "---|" * (len(SETS) + 3)]
    for row, label in ROWS:
        cells = []
        for data_set, _ in SETS:
            vals = row_values(reports, plan, row, data_set, accuracy)
            cells.append(pct_cell(vals) if row != "pretrained" else
                         wilson_cell(reports[("pretrained", 0, data_set)]) + " (one run)")
        f1 = row_values(reports, plan, row, "dfar", lambda r: r["metrics"]["macro_f1"])
        unp = row_values(reports, plan, row, "dfar", lambda r: r["metrics"]["unparseable_rate"])
        cells.append("%.3f" % statistics.fmean(f1))
        cells.append(pct(statistics.fmean(unp)))
        lines.append("| %s | %s |" % (label, " | ".join(cells)))
    return "\n".join(lines)


def per_seed_table(reports, plan):
    lines = ["| row | seed | " + " | ".join("%s [95%% Wilson]" % label for _, label in SETS) + " |",
             "|" + "---|" * (len(SETS) + 2)]
    for row, label in ROWS:
        seeds = [0] if row == "pretrained" else plan["seed_list"]
        for s in seeds:
            cells = [wilson_cell(reports[(row, s, d)]) for d, _ in SETS]
            lines.append("| %s | %s | %s |" % (label, "—" if s == 0 else s, " | ".join(cells)))
    return "\n".join(lines)


def check_paired(a, b, what):
    if a["examples"]["index"] != b["examples"]["index"] or a.get("data") != b.get("data"):
        fail("%s: the two reports were made on different examples; they cannot be paired" % what)


def mcnemar_table(reports, plan):
    lines = ["| set | seed | L+R right, L wrong | L right, L+R wrong | exact McNemar p |", "|---|---|---|---|---|"]
    pvalues = {}
    for data_set, label in SETS:
        for s in plan["seed_list"]:
            lr, l_ = reports[("lr", s, data_set)], reports[("l", s, data_set)]
            check_paired(lr, l_, "%s seed %d" % (label, s))
            p, only_lr, only_l = mcnemar_exact(lr["examples"]["correct"], l_["examples"]["correct"])
            pvalues[(data_set, s)] = (p, only_lr, only_l)
            lines.append("| %s | %d | %d | %d | %.3g |" % (label, s, only_lr, only_l, p))
    return "\n".join(lines), pvalues


def reason_value(rep, key):
    r = rep["metrics"].get("reasons_all")
    if not r:
        return None
    if key == "similarity":
        return r["similarity"]["mean"] if r.get("similarity") else None
    if key == "auto_mar":
        return r["auto_mar"]["rate"] if r.get("auto_mar") else None
    return r["overlap"][key]


def reason_table(reports, plan, data_set):
    cols = [("similarity", "similarity", "%.3f"), ("auto_mar", "automatic MAR", None),
            ("rouge_l_f1", "ROUGE-L F1", "%.4f"), ("chrf", "chrF", "%.3f"), ("bleu4", "BLEU-4", "%.4f"),
            ("mean_generated_words", "words per reason", "%.1f")]
    lines = ["| row | " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for row, label in (("pretrained", "pre-trained"), ("lr", "L+R")):
        cells = []
        for key, _, form in cols:
            vals = row_values(reports, plan, row, data_set, lambda r: reason_value(r, key))
            if any(v is None for v in vals):
                cells.append("not judged")
                continue
            mean, sd, _, _, _ = seed_stats(vals)
            if form is None:
                cells.append(pct(mean) + ("" if sd is None else " ± %.1f" % (100 * sd)))
            else:
                cells.append(form % mean + ("" if sd is None else " ± " + form % sd))
        lines.append("| %s | %s |" % (label, " | ".join(cells)))
    ceiling = reports[("pretrained", 0, data_set)]["metrics"]["auto_mar_rule"].get("ceiling")
    return "\n".join(lines), ceiling


def read_metrics(path):
    try:
        return [json.loads(line) for line in open(path) if line.strip()]
    except (OSError, ValueError) as e:
        fail("%s: %s" % (path, e))


def plot_losses(run, plan, out_dir, stem):
    """One PNG per objective, every seed's training loss; returns the paths (None without matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    paths = []
    for obj, label in (("l", "L"), ("lr", "L+R")):
        fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
        for s in plan["seed_list"]:
            rows = read_metrics(os.path.join(run, "train-%s-seed%d" % (obj, s), "metrics.jsonl"))
            steps = [r["step"] for r in rows]
            loss = [r["loss"] for r in rows]
            k = max(1, len(loss) // 50)  # A running mean over ~2% of the steps shows the trend.
            smooth = [statistics.fmean(loss[max(0, i - k + 1):i + 1]) for i in range(len(loss))]
            line, = ax.plot(steps, loss, linewidth=0.6, alpha=0.35)
            ax.plot(steps, smooth, color=line.get_color(), linewidth=1.6, label="seed %d" % s)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss (per supervised token)")
        ax.set_title("%s: objective %s" % (os.path.basename(plan.get("model", "")), label))
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = os.path.join(out_dir, "%s-loss-%s.png" % (stem, obj))
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def phase_rows(run):
    rows = []
    for done in sorted(glob.glob(os.path.join(run, "state", "*.done"))):
        name = os.path.basename(done)[:-len(".done")]
        secs, finished = open(done).read().strip().split("\t")
        rows.append((name, int(secs), finished))
    order = {"eval-pretrained": 0}
    rows.sort(key=lambda r: (r[2], order.get(r[0][:15], 1)))
    return rows


def phase_table(run):
    rows = phase_rows(run)
    lines = ["| phase | seconds | finished (UTC) |", "|---|---|---|"]
    lines += ["| %s | %d | %s |" % r for r in rows]
    totals = {}
    for name, secs, _ in rows:
        kind = re.sub(r"-seed\d+", "", name)
        totals.setdefault(kind, []).append(secs)
    summary = ["| kind | runs | mean seconds | total seconds |", "|---|---|---|---|"]
    for kind, vals in sorted(totals.items()):
        summary.append("| %s | %d | %.0f | %d |" % (kind, len(vals), statistics.fmean(vals), sum(vals)))
    total = sum(r[1] for r in rows)
    return "\n".join(lines), "\n".join(summary), total


def model_name(plan):
    return "`%s`" % os.path.basename(plan.get("model", "").rstrip("/"))


def verdict_paragraph(reports, plan, pvalues):
    seeds = plan["seed_list"]
    diff = [100 * (accuracy(reports[("lr", s, "dfar")]) - accuracy(reports[("l", s, "dfar")])) for s in seeds]
    mean, sd, ci, _, _ = seed_stats(diff)
    wins = sum(1 for d in diff if d > 0)
    sig = [s for s in seeds if pvalues[("dfar", s)][0] < 0.05]
    sig_lr = [s for s in sig if diff[seeds.index(s)] > 0]
    sig_l = [s for s in sig if diff[seeds.index(s)] < 0]
    text = ["On DFAR's test set, L+R minus L is %+.1f accuracy points on average over %d seed(s)" % (mean, len(seeds))]
    if ci is not None:
        text.append(" (standard deviation %.1f; 95%% t-interval over seeds [%+.1f, %+.1f])" % (sd, ci[0], ci[1]))
    text.append(". L+R is ahead on %d of %d seeds. The paired McNemar test rejects equality at the 5%% level "
                "on %d seed(s) in L+R's favour and on %d in L's." % (wins, len(seeds), len(sig_lr), len(sig_l)))
    if ci is not None and ci[0] > 0 and len(sig_lr) == len(seeds):
        text.append(" At this scale the run reproduces the direction of the paper's result, L+R above L; its size "
                    "is not comparable: %s, %s epoch(s), against 7B models trained for 10."
                    % (model_name(plan), plan["epochs"]))
    elif ci is not None and ci[1] < 0 and len(sig_l) == len(seeds):
        text.append(" At this scale the run shows the opposite of the paper's result: L is above L+R.")
    else:
        text.append(" So this run does not establish a difference between L and L+R for %s after %s "
                    "epoch(s); it neither confirms nor refutes the paper's advantage for L+R, which was measured "
                    "on 7B models after 10 epochs." % (model_name(plan), plan["epochs"]))
    return "".join(text)


def machine_text(run):
    path = os.path.join(run, "state", "machine.txt")
    return open(path).read().strip() if os.path.exists(path) else "(not recorded)"


def write_readme(readme, line, doc_rel):
    text = open(readme).read()
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    if begin not in text or end not in text:
        fail("%s: no '%s' ... '%s' block to fill" % (readme, begin, end))
    block = begin + "\n" + line + "\n\nFull results, intervals and paired tests: [%s](%s).\n" % (doc_rel, doc_rel) + end
    text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    tmp = readme + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, readme)


def headline_line(reports, plan):
    seeds = plan["seed_list"]

    def acc(row, d):
        return pct(statistics.fmean(row_values(reports, plan, row, d, accuracy)))
    return ("| model | rows x epochs | seeds | pre-trained / L / L+R on DFAR test | on ETHOS | on held-out |\n"
            "|---|---|---|---|---|---|\n"
            "| %s + LoRA | %s x %s | %d | %s / %s / %s | %s / %s / %s | %s / %s / %s |"
            % (os.path.basename(plan.get("model", "")), "all 4,500" if plan["train_rows"] == "0" else plan["train_rows"],
               plan["epochs"], len(seeds), acc("pretrained", "dfar"), acc("l", "dfar"), acc("lr", "dfar"),
               acc("pretrained", "ethos"), acc("l", "ethos"), acc("lr", "ethos"),
               acc("pretrained", "heldout"), acc("l", "heldout"), acc("lr", "heldout")))


def build_page(run, plan, reports, pngs, out):
    mc_table, pvalues = mcnemar_table(reports, plan)
    dfar_reasons, ceiling = reason_table(reports, plan, "dfar")
    held_reasons, _ = reason_table(reports, plan, "heldout")
    phases, phase_summary, total = phase_table(run)
    n = {d: reports[("pretrained", 0, d)]["n"] for d, _ in SETS}
    doc_dir = os.path.dirname(os.path.abspath(out))
    parts = [
        "# Results: L against L+R on this machine",
        "",
        "_Generated by `tools/experiment_report.py` from the run in `%s` (`make experiment`). "
        "Do not edit by hand: rerun the report instead._" % run,
        "",
        "## The run",
        "",
        "- model: `%s` with LoRA (the configs `%s` and `%s`)" % (plan.get("model"), plan.get("config_l"),
                                                              plan.get("config_lr")),
        "- training: %s DFAR training rows, %s epoch(s), seeds %s, %s ranks, dtype `%s`, sequence length %s" % (
            "all 4,500" if plan["train_rows"] == "0" else plan["train_rows"], plan["epochs"], plan["seeds"],
            plan["np"], plan["dtype"], plan["seq"]),
        "- evaluation: greedy generation on %d DFAR test rows, %d ETHOS rows and %d hand-written held-out "
        "statements (`data/heldout/statements.csv`); the pre-trained model is prompted as L+R; a reason gets %s "
        "new tokens, and where no reason is read (L, ETHOS) decoding stops at the verdict's sentence"
        % (n["dfar"], n["ethos"], n["heldout"], plan["new_tokens"]),
        "- wall time of all phases: %d s (%.1f h)" % (total, total / 3600.0),
        "",
        "Machine:",
        "",
        "```",
        machine_text(run),
        "```",
        "",
        "## Accuracy",
        "",
        "Fine-tuned rows: mean over seeds ± standard deviation [95% Student-t interval of the mean over seeds]. "
        "The pre-trained row is one deterministic run (greedy decoding), with its 95% Wilson interval over the "
        "test examples. An unparseable answer counts as wrong.",
        "",
        headline_table(reports, plan),
        "",
        "The seed paper's figures on DFAR's test set (Kabir et al., ICPR 2024; QLoRA, 10 epochs), for "
        "comparison; they were not measured here:",
        "",
        "| model | L | L+R |",
        "|---|---|---|",
    ]
    parts += ["| %s (paper) | %s | %s |" % p for p in PAPER]
    parts += [
        "",
        "**What this run shows.** " + verdict_paragraph(reports, plan, pvalues),
        "",
        "Per seed, with each report's 95% Wilson interval over its examples:",
        "",
        per_seed_table(reports, plan),
        "",
        "## Paired tests: L+R against L, per seed",
        "",
        mc_table,
        "",
        "## Reasons (DFAR test, all rows)",
        "",
        "Mean over seeds ± standard deviation. Similarity: cosine of the generated and the human reason under "
        "all-MiniLM-L6-v2. Automatic MAR: the share of generated reasons whose nearest human training reasons "
        "argue for the other label, or that are empty (docs/metrics.md); it is not the paper's human-judged MAR.",
        "",
        dfar_reasons,
        "",
        ("The automatic-MAR rule, applied to the human reasons of these test rows, agrees with gold on %s of them: "
         "a rate near %s is what human-like reasons would score." % (pct(ceiling["rate"]), pct(1 - ceiling["rate"]))
         if ceiling else "The automatic-MAR rule's ceiling was not measured (no encoder)."),
        "",
        "On the held-out statements:",
        "",
        held_reasons,
        "",
        "## Training loss",
        "",
    ]
    if pngs:
        parts += ["![%s](%s)" % (os.path.basename(p), os.path.relpath(p, doc_dir)) for p in pngs]
    else:
        parts.append("(matplotlib is not installed: no plots)")
    parts += [
        "",
        "## Wall time of each phase",
        "",
        phase_summary,
        "",
        "<details><summary>every phase</summary>",
        "",
        phases,
        "",
        "</details>",
        "",
    ]
    return "\n".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="the experiment's run dir (EXP_DIR)")
    ap.add_argument("--out", required=True, help="the Markdown page to write (PNGs go beside it, in <stem>/)")
    ap.add_argument("--readme", help="fill the README's results block with the headline row")
    a = ap.parse_args()
    plan = read_plan(a.run)
    if not plan["seed_list"]:
        fail("%s/state/plan names no seeds" % a.run)
    reports = load_reports(a.run, plan)
    stem = os.path.splitext(os.path.basename(a.out))[0]
    png_dir = os.path.join(os.path.dirname(os.path.abspath(a.out)), stem)
    os.makedirs(png_dir, exist_ok=True)
    pngs = plot_losses(a.run, plan, png_dir, stem)
    page = build_page(a.run, plan, reports, pngs, a.out)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        f.write(page)
    os.replace(tmp, a.out)
    print("wrote", a.out, *(pngs or []))
    if a.readme:
        write_readme(a.readme, headline_line(reports, plan), os.path.relpath(a.out, os.path.dirname(
            os.path.abspath(a.readme))))
        print("updated", a.readme)


if __name__ == "__main__":
    main()
