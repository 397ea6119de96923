#!/usr/bin/env python3
"""PEFT interoperability check: an adapter trained and saved by modulora-ts, loaded by PEFT.

Loads fixtures/tiny-llama with transformers (float32, CPU), applies the adapter directory that
modulora-ts trained and saved (scripts/results/trained-adapter: adapter_config.json +
adapter_model.safetensors + modulora.json) with `peft.PeftModel.from_pretrained`, computes the
logits for the input ids stored next to it (scripts/results/trained-adapter-logits.safetensors:
`input_ids` i32 [2, 16] and our `logits` f32 [2, 16, 4096]) and compares:

  1. PEFT's view of the adapter weights (get_peft_model_state_dict) with our file: same keys,
     same values (every tensor was loaded, nothing renamed or dropped);
  2. PEFT's logits with ours: max abs difference, PASS if < 1e-3;
  3. the logits after PEFT's merge_and_unload() with ours (same threshold).

It also reports how far the adapter moves the logits from the base model's, so a PASS is not
the trivial one of an adapter that changes nothing.

Needs torch, transformers, peft and safetensors; no GPU (it runs on the CPU) and no network
(HF_HUB_OFFLINE). Exit status: 0 PASS, 1 FAIL, 2 missing dependency or input.

    python3 packages/llama/scripts/peft_check.py [--model DIR] [--adapter DIR] [--logits FILE]
                                                 [--out FILE | --no-write]

The inputs are regenerated (by the TypeScript side) with
    pnpm --filter @modulora/llama build && node packages/llama/scripts/write-peft-check.mjs
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
THRESHOLD = 1e-3


def fail_setup(message: str) -> "NoReturn":  # noqa: F821
    print(f"peft_check: {message}", file=sys.stderr)
    sys.exit(2)


def import_deps():
    missing = []
    mods = {}
    for name in ("torch", "transformers", "peft", "safetensors"):
        try:
            mods[name] = __import__(name)
        except ImportError as err:
            missing.append(f"{name} ({err})")
    if missing:
        fail_setup(
            "missing Python packages: " + ", ".join(missing) + ".\n"
            "This check needs torch, transformers, peft and safetensors (the GPU host has torch 2.11, "
            "transformers 5.17, peft 0.21); install them or run it there. It runs on the CPU."
        )
    return mods


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=REPO / "fixtures" / "tiny-llama")
    ap.add_argument("--adapter", type=Path, default=HERE / "results" / "trained-adapter")
    ap.add_argument("--logits", type=Path, default=HERE / "results" / "trained-adapter-logits.safetensors")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "peft_check.json", help="where to write the results as JSON")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()

    for path, what in ((args.model / "config.json", "model config"), (args.adapter / "adapter_config.json", "adapter config"),
                       (args.adapter / "adapter_model.safetensors", "adapter weights"), (args.logits, "our logits")):
        if not path.is_file():
            fail_setup(f"{what} not found: {path}")

    # No network: everything is local.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    mods = import_deps()
    torch = mods["torch"]
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    torch.set_grad_enabled(False)
    t0 = time.time()

    ours = load_file(str(args.logits))
    input_ids = ours["input_ids"].to(torch.long)
    our_logits = ours["logits"].to(torch.float32)
    adapter_tensors = load_file(str(args.adapter / "adapter_model.safetensors"))
    adapter_config = json.loads((args.adapter / "adapter_config.json").read_text())

    try:
        model = AutoModelForCausalLM.from_pretrained(str(args.model), dtype=torch.float32, attn_implementation="sdpa")
    except TypeError:  # transformers < 4.56 calls it torch_dtype
        model = AutoModelForCausalLM.from_pretrained(str(args.model), torch_dtype=torch.float32, attn_implementation="sdpa")
    model.to("cpu").eval()
    base_logits = model(input_ids=input_ids).logits.float()

    peft_model = PeftModel.from_pretrained(model, str(args.adapter), is_trainable=False)
    peft_model.eval()

    # 1. PEFT holds exactly our tensors.
    state = get_peft_model_state_dict(peft_model)
    missing = sorted(set(adapter_tensors) - set(state))
    unexpected = sorted(set(state) - set(adapter_tensors))
    weight_diff = max(
        (float((state[k].float().cpu() - adapter_tensors[k].float()).abs().max()) for k in adapter_tensors if k in state),
        default=float("nan"),
    )
    lora_modules = sum(1 for _, m in peft_model.named_modules() if type(m).__name__ == "Linear" and hasattr(m, "lora_A"))
    scalings = sorted({float(s) for _, m in peft_model.named_modules() if hasattr(m, "scaling") and isinstance(getattr(m, "scaling"), dict) for s in m.scaling.values()})

    # 2. PEFT's logits vs ours.
    peft_logits = peft_model(input_ids=input_ids).logits.float()
    diff = float((peft_logits - our_logits).abs().max())
    rel_l2 = float((peft_logits - our_logits).norm() / our_logits.norm())
    moved = float((peft_logits - base_logits).abs().max())

    # 3. Merged weights (PEFT's merge) vs ours.
    merged = peft_model.merge_and_unload()
    merged_logits = merged(input_ids=input_ids).logits.float()
    merged_diff = float((merged_logits - our_logits).abs().max())

    weights_ok = not missing and not unexpected and weight_diff == 0.0
    passed = weights_ok and diff < THRESHOLD and merged_diff < THRESHOLD and moved > 10 * THRESHOLD
    result = {
        "check": "modulora-ts adapter loaded by PEFT",
        "model": str(args.model.relative_to(REPO) if args.model.is_relative_to(REPO) else args.model),
        "adapter": str(args.adapter.relative_to(REPO) if args.adapter.is_relative_to(REPO) else args.adapter),
        "input_ids_shape": list(input_ids.shape),
        "adapter_config": {k: adapter_config.get(k) for k in ("r", "lora_alpha", "use_rslora", "target_modules")},
        "lora_modules": lora_modules,
        "scalings": scalings,
        "adapter_tensors": len(adapter_tensors),
        "missing_in_peft": missing,
        "unexpected_in_peft": unexpected,
        "adapter_weights_max_abs_diff": weight_diff,
        "logits_max_abs_diff": diff,
        "logits_rel_l2": rel_l2,
        "merged_logits_max_abs_diff": merged_diff,
        "adapter_moves_logits_by": moved,
        "threshold": THRESHOLD,
        "pass": passed,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": mods["transformers"].__version__,
            "peft": mods["peft"].__version__,
            "safetensors": getattr(mods["safetensors"], "__version__", "?"),
        },
        "device": "cpu",
        "seconds": round(time.time() - t0, 2),
    }

    print(f"model      {result['model']}")
    print(f"adapter    {result['adapter']}  (r={adapter_config.get('r')}, lora_alpha={adapter_config.get('lora_alpha')}, "
          f"{lora_modules} LoRA modules, scaling {scalings})")
    print(f"weights    {len(adapter_tensors)} tensors; missing in PEFT {len(missing)}, unexpected {len(unexpected)}, max abs diff {weight_diff:.3g}")
    print(f"logits     PEFT vs modulora-ts: max abs diff {diff:.3e} (rel L2 {rel_l2:.2e}); the adapter moves the base logits by up to {moved:.3f}")
    print(f"merged     PEFT merge_and_unload vs modulora-ts: max abs diff {merged_diff:.3e}")
    print(f"versions   torch {torch.__version__}, transformers {mods['transformers'].__version__}, peft {mods['peft'].__version__}")
    print(("PASS" if passed else "FAIL") + f" (threshold {THRESHOLD:g})")
    if missing or unexpected:
        print(f"  missing: {missing[:8]}\n  unexpected: {unexpected[:8]}")
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(args.out)
        print(f"wrote {args.out}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
