#!/usr/bin/env python3
"""Plots training loss curves from dfar metrics.jsonl files into one PNG.

Usage: plot_loss.py OUT.png LABEL=run_dir/metrics.jsonl [LABEL=...]
Uses Debian's python3-matplotlib (installed by scripts/deps.sh).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out = sys.argv[1]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for spec in sys.argv[2:]:
        label, path = spec.split("=", 1)
        rows = [json.loads(line) for line in open(path)]
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=label, linewidth=1.5)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (per supervised token)")
    ax.set_title("dfar demo: SmolLM2-135M-Instruct + LoRA on DFAR")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    print("wrote", out)


if __name__ == "__main__":
    main()
