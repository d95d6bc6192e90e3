"""Alpha-beta model of a data-parallel dfar step at 8, 64 and 512 GPUs.

    t_step(n)    = t_compute + max(0, t_comm(n) - h * t_backward)
    t_compute    = F / (P * u)                 (per GPU; weak scaling: fixed per-GPU batch)
    t_backward   = (2/3) * t_compute          (backward ~ 2x forward)
    t_comm(n)    = 2(n-1) * alpha(n) + S * 2(n-1) / (n * busbw(n))     (ring all-reduce)
    efficiency   = t_compute / t_step(n)

F   FLOPs per GPU per step: tokens * (6 N_trainable + 4 N_frozen [+ 2 N with activation
    checkpointing, the recomputed forward]) + attention 12 * L * d * T per token (x 1.33 with
    checkpointing).
P   the GPU's dense bf16 peak (H100 SXM: 989 TFLOP/s).
u   model-FLOPs utilisation. No GPU was lent to this task, so u is the share of the bf16 peak
    that dfar's own training step reached on this CPU (benchmarks/results/step.json), a
    stand-in until benchmarks/results/gpu.json holds a measured GPU figure.
S   bytes all-reduced per step: trainable parameters x 2 (bf16 gradients; ZeRO-2's
    reduce-scatter + all-gather moves the same bytes as one all-reduce).
h   fraction of communication hidden behind backward: measured by the gradsync benchmark
    (benchmarks/results/gradsync.json), as a stand-in for the GPU's overlap.
busbw  published nccl-tests all-reduce bus bandwidths: 370 GB/s inside an 8x H100 NVLink node
    (n <= 8); across nodes the ring runs at the per-GPU InfiniBand NDR rate, 400 Gb/s = 50 GB/s
    line rate, ~45 GB/s busbw measured by nccl-tests (n > 8).
alpha  per-hop latency: 5 us over NVLink, 10 us over InfiniBand (ring: 2(n-1) hops; NCCL's
    tree algorithm does better at 512 GPUs, so the ring figure is a pessimistic bound).
"""
from dataclasses import dataclass

H100_BF16_PEAK = 989e12
NVLINK_BUSBW, IB_NDR_BUSBW = 370e9, 45e9
NVLINK_ALPHA, IB_ALPHA = 5e-6, 10e-6


@dataclass
class Setup:
    name: str
    layers: int
    hidden: int
    params: float           # All parameters.
    trainable: float        # Parameters with gradients (all of them for full fine-tuning).
    tokens_per_gpu: int     # micro_batch x sequence length.
    seq: int
    checkpointing: bool


def llama2_7b_lora():
    layers, d, ff, r = 32, 4096, 11008, 64
    per_layer = r * ((d + d) * 4 + (d + ff) * 3)  # q,k,v,o + gate,up,down: r*(in+out) each.
    return Setup("Llama-2-7B LoRA r=64 (configs/llama2-7b-lora-lr-8xh100.yaml)", layers, d, 6.74e9,
                 layers * per_layer, 4 * 160, 160, True)


def llama32_1b_full():
    return Setup("Llama-3.2-1B full, ZeRO-2 (configs/llama3.2-1b-full-zero2-8xh100.yaml)", 16, 2048, 1.24e9,
                 1.24e9, 8 * 512, 512, True)


def flops_per_step(s):
    frozen = s.params - s.trainable
    per_token = 6 * s.trainable + 4 * frozen + (2 * s.params if s.checkpointing else 0)
    attn = 12 * s.layers * s.hidden * s.seq * (4 / 3 if s.checkpointing else 1)
    return s.tokens_per_gpu * (per_token + attn)


def comm_seconds(bytes_, n):
    if n <= 1:
        return 0.0
    busbw, alpha = (NVLINK_BUSBW, NVLINK_ALPHA) if n <= 8 else (IB_NDR_BUSBW, IB_ALPHA)
    return 2 * (n - 1) * alpha + bytes_ * 2 * (n - 1) / (n * busbw)


def predict(s, n, mfu, hidden_fraction, peak=H100_BF16_PEAK):
    t_compute = flops_per_step(s) / (peak * mfu)
    t_comm = comm_seconds(2 * s.trainable, n)
    t_step = t_compute + max(0.0, t_comm - hidden_fraction * (2 / 3) * t_compute)
    return {"gpus": n, "compute_s": t_compute, "comm_s": t_comm, "step_s": t_step,
            "efficiency": t_compute / t_step}


def table(mfu, hidden_fraction, gpus=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512)):
    return {s.name: [predict(s, n, mfu, hidden_fraction) for n in gpus] for s in (llama2_7b_lora(), llama32_1b_full())}


if __name__ == "__main__":
    import json
    import sys
    mfu = float(sys.argv[1]) if len(sys.argv) > 1 else 0.4
    h = float(sys.argv[2]) if len(sys.argv) > 2 else 0.8
    print(json.dumps(table(mfu, h), indent=1))
