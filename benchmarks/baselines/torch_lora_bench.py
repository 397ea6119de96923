"""Peer baselines on the GPU: PyTorch + PEFT LoRA (bf16 base) and a PyTorch
re-implementation of ModuLoRA-style training (packed low-bit base weights,
dequantized in forward and again in backward, never stored in full precision).
Random weights: only speed and memory are measured here.
Prints one JSON line per configuration and a table at the end."""
import json, math, os, sys, time, gc
import torch, torch.nn as nn, torch.nn.functional as F

dev = "cuda"
torch.backends.cuda.matmul.allow_tf32 = True
RESULTS = []

SHAPES = {
    "7b": dict(d=4096, ff=11008, L=32, h=32, kv=32, V=32000),
    "13b": dict(d=5120, ff=13824, L=40, h=40, kv=40, V=32000),
    "65b": dict(d=8192, ff=22016, L=80, h=64, kv=64, V=32000),
}

def ceilings():
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    for _ in range(3): a @ b
    torch.cuda.synchronize(); s = torch.cuda.Event(True); e = torch.cuda.Event(True)
    s.record()
    for _ in range(10): a @ b
    e.record(); torch.cuda.synchronize()
    tf = 2 * 8192**3 * 10 / (s.elapsed_time(e) / 1e3) / 1e12
    x = torch.empty(4 * 1024**3 // 2, device=dev, dtype=torch.bfloat16).normal_()
    y = torch.empty_like(x)
    for _ in range(2): y.copy_(x)
    torch.cuda.synchronize(); s.record()
    for _ in range(10): y.copy_(x)
    e.record(); torch.cuda.synchronize()
    bw = 2 * x.numel() * 2 * 10 / (s.elapsed_time(e) / 1e3) / 1e12
    del x, y, a, b; torch.cuda.empty_cache()
    return tf, bw

# ---- packed low-bit weights (asymmetric, per-group scale/zero), dequant via torch ops
def pack(codes, bits):  # codes uint8 [out, in], in % (8//bits) == 0
    per = 8 // bits
    c = codes.view(codes.shape[0], -1, per).to(torch.int32)
    out = torch.zeros(c.shape[:2], dtype=torch.int32, device=codes.device)
    for i in range(per):
        out |= c[..., i] << (bits * i)
    return out.to(torch.uint8)

def unpack(p, bits):
    per = 8 // bits
    mask = (1 << bits) - 1
    p = p.to(torch.int32)
    parts = [((p >> (bits * i)) & mask) for i in range(per)]
    return torch.stack(parts, -1).view(p.shape[0], -1)

class QWeight:
    def __init__(self, out_f, in_f, bits, group=128):
        self.bits, self.group, self.shape = bits, group, (out_f, in_f)
        codes = torch.randint(0, 2**bits, (out_f, in_f), device=dev, dtype=torch.uint8)
        self.packed = pack(codes, bits)
        ng = in_f // group
        self.scale = (torch.rand(out_f, ng, device=dev, dtype=torch.bfloat16) * 0.02 + 0.001)
        self.zero = torch.full((out_f, ng), (2**bits - 1) / 2, device=dev, dtype=torch.bfloat16)
    def dequant(self):
        q = unpack(self.packed, self.bits).to(torch.bfloat16).view(self.shape[0], -1, self.group)
        return ((q - self.zero[..., None]) * self.scale[..., None]).view(self.shape)

class QMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, qw):
        ctx.qw = qw
        return x @ qw.dequant().t()
    @staticmethod
    def backward(ctx, g):
        return g @ ctx.qw.dequant(), None

class LoRALinear(nn.Module):
    def __init__(self, in_f, out_f, r, bits):
        super().__init__()
        self.bits = bits
        if bits == 16:
            self.w = nn.Parameter(torch.randn(out_f, in_f, device=dev, dtype=torch.bfloat16) * 0.02, requires_grad=False)
        else:
            self.qw = QWeight(out_f, in_f, bits)
        self.A = nn.Parameter(torch.randn(r, in_f, device=dev, dtype=torch.float32) / math.sqrt(in_f))
        self.B = nn.Parameter(torch.zeros(out_f, r, device=dev, dtype=torch.float32))
        self.s = 16 / r
    def forward(self, x):
        base = x @ self.w.t() if self.bits == 16 else QMatmul.apply(x, self.qw)
        return base + ((x @ self.A.to(x.dtype).t()) @ self.B.to(x.dtype).t()) * self.s

class RMS(nn.Module):
    def __init__(self, d):
        super().__init__(); self.w = nn.Parameter(torch.ones(d, device=dev, dtype=torch.bfloat16), requires_grad=False)
    def forward(self, x):
        xf = x.float(); return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype) * self.w

def rope(x, pos):
    d = x.shape[-1]; inv = 1.0 / (10000 ** (torch.arange(0, d, 2, device=dev).float() / d))
    f = torch.outer(pos.float(), inv); cos, sin = f.cos().to(x.dtype), f.sin().to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)

class Block(nn.Module):
    def __init__(self, c, r, bits):
        super().__init__()
        d, ff = c["d"], c["ff"]; self.h = c["h"]
        self.n1, self.n2 = RMS(d), RMS(d)
        self.q, self.k, self.v, self.o = (LoRALinear(d, d, r, bits) for _ in range(4))
        self.g, self.u = LoRALinear(d, ff, r, bits), LoRALinear(d, ff, r, bits)
        self.dn = LoRALinear(ff, d, r, bits)
    def forward(self, x):
        B, T, D = x.shape; hd = D // self.h; pos = torch.arange(T, device=dev)
        y = self.n1(x)
        q = rope(self.q(y).view(B, T, self.h, hd).transpose(1, 2), pos)
        k = rope(self.k(y).view(B, T, self.h, hd).transpose(1, 2), pos)
        v = self.v(y).view(B, T, self.h, hd).transpose(1, 2)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, D)
        x = x + self.o(a)
        y = self.n2(x)
        return x + self.dn(F.silu(self.g(y)) * self.u(y))

class Model(nn.Module):
    def __init__(self, c, r, bits, ckpt):
        super().__init__()
        self.emb = nn.Parameter(torch.randn(c["V"], c["d"], device=dev, dtype=torch.bfloat16) * 0.02, requires_grad=False)
        self.blocks = nn.ModuleList(Block(c, r, bits) for _ in range(c["L"]))
        self.norm = RMS(c["d"])
        self.head = nn.Parameter(torch.randn(c["V"], c["d"], device=dev, dtype=torch.bfloat16) * 0.02, requires_grad=False)
        self.ckpt = ckpt
    def forward(self, ids):
        x = F.embedding(ids, self.emb)
        for b in self.blocks:
            x = torch.utils.checkpoint.checkpoint(b, x, use_reentrant=False) if self.ckpt else b(x)
        logits = self.norm(x) @ self.head.t()
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))

def timed_steps(model, params, B, T, V, steps=6, warm=2):
    opt = torch.optim.AdamW(params, lr=1e-4)
    ids = torch.randint(0, V, (B, T), device=dev)
    torch.cuda.reset_peak_memory_stats(); ts = []
    for i in range(warm + steps):
        torch.cuda.synchronize(); t0 = time.perf_counter()
        loss = model(ids) if not hasattr(model, "peft_config") else model(input_ids=ids, labels=ids).loss
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize(); ts.append(time.perf_counter() - t0)
    ts = sorted(ts[warm:]); med = ts[len(ts) // 2]
    return med, torch.cuda.max_memory_allocated() / 2**30

def flops_per_token(c):
    d, ff, L = c["d"], c["ff"], c["L"]
    n_lin = L * (4 * d * d + 3 * d * ff) + c["V"] * d
    return n_lin

PEAK = [989e12]
def record(name, shape, bits, B, T, med, peak, c):
    tps = B * T / med
    n = flops_per_token(c)
    # LoRA training with frozen base: fwd 2N + grad-input 2N (+ recompute 2N if ckpt) per token; report useful 4N
    mfu = tps * 4 * n / PEAK[0]
    r = dict(name=name, shape=shape, bits=bits, B=B, T=T, step_s=round(med, 4), tok_s=round(tps), peak_gib=round(peak, 2), mfu_4N_vs_measured=round(mfu, 3))
    RESULTS.append(r); print(json.dumps(r), flush=True)

def run_custom(shape, bits, B, T, ckpt, r=8):
    c = SHAPES[shape]
    torch.manual_seed(0)
    m = Model(c, r, bits, ckpt)
    params = [p for p in m.parameters() if p.requires_grad]
    med, peak = timed_steps(m, params, B, T, c["V"])
    record(f"torch-modulora{'-ckpt' if ckpt else ''}", shape, bits, B, T, med, peak, c)
    del m, params; gc.collect(); torch.cuda.empty_cache()

def run_peft(shape, B, T, ckpt, r=8):
    from transformers import LlamaConfig, LlamaForCausalLM
    from peft import LoraConfig, get_peft_model
    c = SHAPES[shape]
    cfg = LlamaConfig(hidden_size=c["d"], intermediate_size=c["ff"], num_hidden_layers=c["L"], num_attention_heads=c["h"],
                      num_key_value_heads=c["kv"], vocab_size=c["V"], max_position_embeddings=4096, attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device(dev):
        m = LlamaForCausalLM(cfg).to(torch.bfloat16)
    if ckpt:
        m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False}); m.enable_input_require_grads()
    m = get_peft_model(m, LoraConfig(r=r, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    params = [p for p in m.parameters() if p.requires_grad]
    med, peak = timed_steps(m, params, B, T, c["V"])
    record(f"hf-peft-lora{'-ckpt' if ckpt else ''}", shape, 16, B, T, med, peak, c)
    del m, params; gc.collect(); torch.cuda.empty_cache()

def plan_name(kind, shape, bits, B, T, ck):
    """The name TORCH_BENCH_PLAN selects an entry by: kind-shape-bits, plus -ckpt (e.g. custom-7b-4-ckpt, peft-7b-16)."""
    return f"{kind}-{shape}-{bits}{'-ckpt' if ck else ''}"

def select_plan(plan, spec):
    """The entries named in spec (comma-separated plan_name()s, in plan order); all of them when spec is empty.
    An unknown name is an error listing the valid ones (a typo must not run an empty benchmark)."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        return plan
    known = [plan_name(*e) for e in plan]
    unknown = [n for n in names if n not in known]
    if unknown:
        sys.exit(f"TORCH_BENCH_PLAN: unknown entries {', '.join(unknown)}; known: {', '.join(known)}")
    return [e for e in plan if plan_name(*e) in names]

if __name__ == "__main__":
    tf, bw = ceilings(); PEAK[0] = tf * 1e12
    print(json.dumps(dict(ceiling_bf16_tflops=round(tf), ceiling_copy_tbps=round(bw, 2))), flush=True)
    plan = [
        ("peft", "7b", 16, 4, 512, False), ("peft", "7b", 16, 4, 512, True),
        ("custom", "7b", 16, 4, 512, False),
        ("custom", "7b", 4, 4, 512, False), ("custom", "7b", 4, 4, 512, True),
        ("custom", "7b", 2, 4, 512, True),
        ("custom", "13b", 4, 4, 512, True),
        ("custom", "65b", 4, 1, 512, True), ("custom", "65b", 2, 1, 512, True),
    ]
    plan = select_plan(plan, os.environ.get("TORCH_BENCH_PLAN", ""))
    for kind, shape, bits, B, T, ck in plan:
        try:
            if kind == "peft": run_peft(shape, B, T, ck)
            else: run_custom(shape, bits, B, T, ck)
        except Exception as ex:
            print(json.dumps(dict(failed=f"{kind} {shape} {bits} {ck}", err=str(ex)[:300])), flush=True)
            gc.collect(); torch.cuda.empty_cache()
    out = os.environ.get("OUT", ".")
    json.dump(dict(ceiling_bf16_tflops=tf, ceiling_copy_tbps=bw, results=RESULTS), open(os.path.join(out, "torch_baselines.json"), "w"), indent=1)
    print("name shape bits B T step_s tok/s peakGiB mfu")
    for r in RESULTS:
        print(r["name"], r["shape"], r["bits"], r["B"], r["T"], r["step_s"], r["tok_s"], r["peak_gib"], r["mfu_4N_vs_measured"])
