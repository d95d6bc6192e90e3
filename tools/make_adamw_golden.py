"""Prints the golden values of tests/train/optimizer_test.cpp: torch.optim.AdamW
(foreach=False, the reference loop) on two fp32 parameters after three steps.
  "w" (6 values, decayed) and "norm.weight" (2 values, no decay, as dfar's
  FlatParameters treats norms); lr 0.01, betas (0.9, 0.999), eps 1e-8, weight
  decay 0.1 on "w" only; the gradient of step s (1-based) is g0 * s - 0.05 * s^2.
Run: /usr/bin/python3 tools/make_adamw_golden.py (any torch >= 1.13).
"""
import torch

W0 = [0.5, -0.25, 1.0, -1.5, 0.125, 2.0]
N0 = [1.0, 0.75]
GW = [0.1, -0.2, 0.3, 0.05, -0.4, 0.0]
GN = [0.02, -0.03]


def main():
    w = torch.tensor(W0, dtype=torch.float32, requires_grad=True)
    n = torch.tensor(N0, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.AdamW([{"params": [w], "weight_decay": 0.1}, {"params": [n], "weight_decay": 0.0}],
                            lr=0.01, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    for s in range(1, 4):
        w.grad = torch.tensor([g * s - 0.05 * s * s for g in GW], dtype=torch.float32)
        n.grad = torch.tensor([g * s - 0.05 * s * s for g in GN], dtype=torch.float32)
        opt.step()
    print("w:", ", ".join("%.9ef" % x for x in w.detach().tolist()))
    print("norm.weight:", ", ".join("%.9ef" % x for x in n.detach().tolist()))


if __name__ == "__main__":
    main()
