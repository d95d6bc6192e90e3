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


# ---- ZeRO: memory per GPU and ZeRO-3's extra all-gathers ------------------
ZERO_MODEL_DOC = """
Bytes a GPU holds for full fine-tuning in bf16 with dfar's defaults
(dist.reduce_dtype fp32, AdamW with fp32 masters), psi = parameters, N = GPUs:
  parameters  2 psi (bf16)                        ZeRO 3: 2 psi / N
  gradients   2 psi (bf16, autograd) + 4 psi (fp32 main_grad)
                                                  ZeRO 2/3: 4 psi / N + staging
  optimizer   12 psi (fp32 master, m, v)          ZeRO >= 1: 12 psi / N
  ZeRO 3 also holds up to 3 layers gathered (the running one, the prefetched
  one, and one more while backward's reduce-scatter drains), and ZeRO 2/3
  up to 3 gradient buckets of 32 MB staged in fp32.
Activations with checkpointing (every decoder config here uses it for full
fine-tuning): each layer's bf16 input is kept (2 T d per layer), plus one
layer's recompute, ~34 T d bytes (Korthikanti et al. 2022, without the
attention-score term that flash attention removes), plus fp32 logits at
the supervised positions (half the tokens: 2 T V). A fixed 3 GB covers the
CUDA context, NCCL buffers and allocator fragmentation.
Communication per step and GPU, ring algorithms:
  ZeRO 0-2  all-reduce (or reduce-scatter + all-gather) of the fp32
            gradients: 2 (N-1)/N * 4 psi bytes
  ZeRO 3    all-gather of the bf16 parameters in forward and again in
            backward (2 x (N-1)/N * 2 psi) + reduce-scatter of the fp32
            gradients ((N-1)/N * 4 psi): the same 8 psi (N-1)/N in all,
            but spread over forward and backward, so more of it can hide.
            (With bf16 reduction it is 1.5x ZeRO 2's volume, as in the
            ZeRO paper.)
"""
CONTEXT_BYTES = 3e9
BUCKET_BYTES = 32 * 2**20


@dataclass
class Shape:
    name: str
    layers: int
    hidden: int
    vocab: int
    params: float


# Published shapes (parameters, layers, hidden size, vocabulary).
SHAPES = [
    Shape("Llama-3.2-1B", 16, 2048, 128256, 1.24e9),
    Shape("Llama-3.2-3B", 28, 3072, 128256, 3.21e9),
    Shape("Llama-2-7B", 32, 4096, 32000, 6.74e9),
    Shape("Llama-2-13B", 40, 5120, 32000, 13.0e9),
    Shape("CodeLlama-34B", 48, 8192, 32000, 33.7e9),
    Shape("Llama-2-70B", 80, 8192, 32000, 69.0e9),
    Shape("Llama-3.1-405B", 126, 16384, 128256, 405e9),
]


def zero_memory_bytes(shape, gpus, stage, tokens_per_gpu=8192):
    psi, n = shape.params, gpus
    layer = psi / shape.layers
    params = 2 * psi / n if stage >= 3 else 2 * psi
    grads = 4 * psi / n + 3 * BUCKET_BYTES if stage >= 2 else 6 * psi
    optim = 12 * psi / n if stage >= 1 else 12 * psi
    gathered = 3 * 2 * layer if stage >= 3 else 0
    t, d = tokens_per_gpu, shape.hidden
    activations = 2 * t * d * shape.layers + 34 * t * d + 2 * t * shape.vocab
    return {"params": params, "grads": grads, "optim": optim, "gathered": gathered, "activations": activations,
            "total": params + grads + optim + gathered + activations + CONTEXT_BYTES}


def largest_fitting(gpus, stage, gpu_bytes=80e9):
    fitting = [s for s in SHAPES if zero_memory_bytes(s, gpus, stage)["total"] <= gpu_bytes]
    return max(fitting, key=lambda s: s.params) if fitting else None


def collective_seconds(bytes_, n, all_reduce):
    """Ring all-reduce (2(n-1) steps) or one all-gather / reduce-scatter ((n-1) steps) of bytes_."""
    if n <= 1:
        return 0.0
    busbw, alpha = (NVLINK_BUSBW, NVLINK_ALPHA) if n <= 8 else (IB_NDR_BUSBW, IB_ALPHA)
    k = 2 if all_reduce else 1
    return k * (n - 1) * alpha + k * bytes_ * (n - 1) / (n * busbw)


def full_setup(shape, tokens_per_gpu=8192, seq=4096):
    return Setup(f"{shape.name} full", shape.layers, shape.hidden, shape.params, shape.params, tokens_per_gpu, seq,
                 True)


def predict_zero(shape, n, stage, mfu, hidden_fraction, peak=H100_BF16_PEAK):
    """Step time of a full fine-tune under ZeRO `stage`: ZeRO 0-2 hide their gradient reduction behind
    backward; ZeRO 3 has its forward gathers to hide behind forward too."""
    s = full_setup(shape)
    t_compute = flops_per_step(s) / (peak * mfu)
    t_fwd, t_bwd = t_compute / 3, 2 * t_compute / 3
    psi = shape.params
    if stage >= 3:
        t_fwd_comm = collective_seconds(2 * psi, n, False)
        t_bwd_comm = collective_seconds(2 * psi, n, False) + collective_seconds(4 * psi, n, False)
        exposed = max(0.0, t_fwd_comm - hidden_fraction * t_fwd) + max(0.0, t_bwd_comm - hidden_fraction * t_bwd)
        t_comm = t_fwd_comm + t_bwd_comm
    else:
        t_comm = collective_seconds(4 * psi, n, True)
        exposed = max(0.0, t_comm - hidden_fraction * t_bwd)
    t_step = t_compute + exposed
    return {"gpus": n, "zero": stage, "compute_s": t_compute, "comm_s": t_comm, "step_s": t_step,
            "efficiency": t_compute / t_step,
            "memory_gb": zero_memory_bytes(shape, n, stage)["total"] / 1e9}


def zero_table(mfu, hidden_fraction, gpus=(8, 64, 512)):
    shapes = [s for s in SHAPES if s.name in ("Llama-2-7B", "Llama-2-70B")]
    return {s.name: [predict_zero(s, n, z, mfu, hidden_fraction) for n in gpus for z in (2, 3)] for s in shapes}


def fit_table(gpus=(1, 8, 64, 512), gpu_bytes=80e9):
    out = []
    for n in gpus:
        row = {"gpus": n}
        for z in range(4):
            best = largest_fitting(n, z, gpu_bytes)
            row[f"zero{z}"] = best.name if best else "none"
        out.append(row)
    return out
