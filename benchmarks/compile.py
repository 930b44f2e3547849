"""Does torch.compile (``trainer.compile=inductor``) or channels_last pay on this machine? A
benchmark, not a test: in ONE process, the DPO step (LoRA, the reference = adapters disabled) and
SFT on twice the images, eager, channels_last and compiled, interleaved; medians after warm-up,
and the compile time (the compiled setup's first rounds against eager's).

    python benchmarks/compile.py                   # tiny SD-style UNet, 32x32x4 latents, batch 8 (~6 min on 2 CPU cores)
    python benchmarks/compile.py --model sd15_unet --tokens 77 --device cuda --precision bf16
"""

from __future__ import annotations

import argparse
import statistics

from step_cost import DTYPES, Runner, Setup, time_rounds, write_result

VARIANTS = {"eager": {}, "channels_last": {"channels_last": True}, "inductor": {"compile": "inductor"}}
KINDS = ("sft_2B", "dpo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny_sd")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="no", choices=sorted(DTYPES))
    parser.add_argument("--out", default="benchmarks/results/compile.json")
    args = parser.parse_args()
    runners = {}
    for variant, options in VARIANTS.items():
        variant_args = argparse.Namespace(**{**vars(args), "compile": "no", "channels_last": False, **options})
        setup = Setup(True, variant_args)
        for kind in KINDS:
            runners[variant, kind] = Runner(kind, setup, variant_args)
    times, first = time_rounds(runners, args.warmup, args.steps)
    median = {f"{v}/{k}": statistics.median(times[v, k]) for v, k in runners}
    result = {"model": args.model, "batch": args.batch, "device": args.device, "precision": args.precision,
              "seconds": median,
              "warmup_seconds": {f"{v}/{k}": sum(first[v, k]) for v, k in runners},
              "speedup_over_eager": {f"{v}/{k}": median[f"eager/{k}"] / median[f"{v}/{k}"] for v, k in runners}}
    for key, seconds in median.items():
        print(f"{key}: {seconds * 1000:.1f} ms (x{result['speedup_over_eager'][key]:.3f} eager's speed; "
              f"warm-up {result['warmup_seconds'][key]:.1f} s)")
    write_result(result, args.out)


if __name__ == "__main__":
    main()
