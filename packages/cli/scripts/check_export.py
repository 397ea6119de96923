#!/usr/bin/env python3
"""Export check: a checkpoint written by `modulora export` loaded by Hugging Face transformers.

`modulora export --model BASE --adapter ADAPTER --out DIR --reference` writes a merged bf16
checkpoint and, next to its weights, `modulora_reference.safetensors`:

  input_ids       i32 [2, 16]      token ids
  logits_merged   f32 [2, 16, V]   our logits of the exported checkpoint read back (bf16 → f32)
  logits_adapter  f32 [2, 16, V]   our logits of the base + adapter before merging (f32)

This script loads DIR with `AutoModelForCausalLM.from_pretrained` and checks:

  1. the directory is a plain checkpoint: config.json has no quantization_config and says
     torch_dtype bfloat16; the weights are bf16; transformers reports no missing, unexpected or
     mismatched tensors;
  2. transformers' logits (computed in float32 from the bf16 weights) equal `logits_merged`:
     max abs difference < 1e-3 (PASS/FAIL) — both sides compute the same function of the same
     weights, so this checks names, layouts and config;
  3. for information, how far they are from `logits_adapter` (the rounding of the merged weights
     to bf16; not a pass criterion).

Optionally `--bf16` also runs the model in bfloat16 (on CUDA when available) and reports the
difference, as the model would be used.

Needs torch, transformers and safetensors; no network (HF_HUB_OFFLINE). Exit status: 0 PASS,
1 FAIL, 2 missing dependency or input.

    python3 packages/cli/scripts/check_export.py DIR [--reference FILE] [--device cpu|cuda] [--bf16] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

THRESHOLD = 1e-3


def fail_setup(message: str) -> "NoReturn":  # noqa: F821
    print(f"check_export: {message}", file=sys.stderr)
    sys.exit(2)


def import_deps():
    missing = []
    mods = {}
    for name in ("torch", "transformers", "safetensors"):
        try:
            mods[name] = __import__(name)
        except ImportError as err:
            missing.append(f"{name} ({err})")
    if missing:
        fail_setup("missing Python packages: " + ", ".join(missing) + "; install torch, transformers and safetensors (or run it on the GPU host)")
    return mods


def load_model(AutoModelForCausalLM, path, torch_dtype):
    kwargs = dict(attn_implementation="sdpa", output_loading_info=True)
    try:
        return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype, **kwargs)
    except TypeError:  # transformers < 4.56 calls it torch_dtype
        return AutoModelForCausalLM.from_pretrained(str(path), torch_dtype=torch_dtype, **kwargs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export", type=Path, help="the --out directory of modulora export")
    ap.add_argument("--reference", type=Path, help="our ids and logits (default: EXPORT/modulora_reference.safetensors)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (float32 either way)")
    ap.add_argument("--bf16", action="store_true", help="also run in bfloat16 and report the difference")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()
    ref_path = args.reference or args.export / "modulora_reference.safetensors"
    for path, what in ((args.export / "config.json", "exported config"), (args.export / "model.safetensors", "exported weights"), (ref_path, "reference logits (modulora export --reference)")):
        if not path.is_file():
            fail_setup(f"{what} not found: {path}")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    mods = import_deps()
    torch = mods["torch"]
    from safetensors import safe_open
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    torch.set_grad_enabled(False)
    t0 = time.time()
    device = args.device if args.device != "cuda" or torch.cuda.is_available() else "cpu"

    config = json.loads((args.export / "config.json").read_text())
    with safe_open(str(args.export / "model.safetensors"), "pt") as f:
        dtypes = sorted({str(f.get_slice(k).get_dtype()) for k in f.keys()})
    config_ok = "quantization_config" not in config and config.get("torch_dtype") == "bfloat16"

    ours = load_file(str(ref_path))
    input_ids = ours["input_ids"].to(torch.long).to(device)
    merged_ref = ours["logits_merged"].float()
    adapter_ref = ours["logits_adapter"].float()

    model, info = load_model(AutoModelForCausalLM, args.export, torch.float32)
    model.to(device).eval()
    loading = {k: sorted(map(str, v)) for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    loading_ok = not any(loading.values())
    logits = model(input_ids=input_ids).logits.float().cpu()
    diff = float((logits - merged_ref).abs().max())
    rel_l2 = float((logits - merged_ref).norm() / merged_ref.norm())
    vs_adapter = float((logits - adapter_ref).abs().max())
    vs_adapter_rel = float((logits - adapter_ref).norm() / adapter_ref.norm())

    bf16 = None
    if args.bf16:
        model_bf16, _ = load_model(AutoModelForCausalLM, args.export, torch.bfloat16)
        model_bf16.to(device).eval()
        lb = model_bf16(input_ids=input_ids).logits.float().cpu()
        bf16 = {"max_abs_diff_vs_merged": float((lb - merged_ref).abs().max()), "rel_l2_vs_merged": float((lb - merged_ref).norm() / merged_ref.norm())}

    passed = config_ok and loading_ok and dtypes == ["BF16"] and diff < THRESHOLD
    result = {
        "check": "modulora export loaded by transformers",
        "export": str(args.export),
        "architecture": config.get("architectures"),
        "config_ok": config_ok,
        "weight_dtypes": dtypes,
        "loading": loading,
        "input_ids_shape": list(input_ids.shape),
        "logits_max_abs_diff_vs_merged": diff,
        "logits_rel_l2_vs_merged": rel_l2,
        "logits_max_abs_diff_vs_unmerged_adapter": vs_adapter,
        "logits_rel_l2_vs_unmerged_adapter": vs_adapter_rel,
        "bf16": bf16,
        "threshold": THRESHOLD,
        "pass": passed,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "transformers": mods["transformers"].__version__},
        "device": device,
        "seconds": round(time.time() - t0, 2),
    }
    print(f"export     {args.export}  ({config.get('architectures')}, weights {', '.join(dtypes)})")
    print(f"config     quantization_config absent and torch_dtype bfloat16: {config_ok}")
    print(f"loading    missing {len(loading.get('missing_keys', []))}, unexpected {len(loading.get('unexpected_keys', []))}, mismatched {len(loading.get('mismatched_keys', []))}")
    print(f"logits     transformers vs modulora (same checkpoint): max abs diff {diff:.3e} (rel L2 {rel_l2:.2e})")
    print(f"           vs the unmerged f32 adapter model: max abs diff {vs_adapter:.3e} (rel L2 {vs_adapter_rel:.2e}; bf16 rounding, informational)")
    if bf16:
        print(f"bf16       transformers in bfloat16 vs modulora: max abs diff {bf16['max_abs_diff_vs_merged']:.3e} (rel L2 {bf16['rel_l2_vs_merged']:.2e})")
    print(f"versions   torch {torch.__version__}, transformers {mods['transformers'].__version__}, device {device}")
    print(("PASS" if passed else "FAIL") + f" (threshold {THRESHOLD:g})")
    if not loading_ok:
        print(f"  {loading}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
