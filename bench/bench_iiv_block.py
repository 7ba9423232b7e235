"""Which IIV default fits and samples better: diagonal, beta/T1 block, or C0/beta/T1 block?

Fits `liu2021_meta` on the bundled example with the three omega structures and prints, per
variant, the sampling figures and the patient-grouped PSIS-LOO comparison.

    python bench/bench_iiv_block.py --chains 2 --tune 400 --draws 400
"""

from __future__ import annotations

import argparse
import json
import warnings

from bayes_cart.analysis.loo import compare_fits
from bayes_cart.example import load_example
from bayes_cart.inference.sampling import fit
from bayes_cart.model.spec import load_spec, spec_from_dict

warnings.filterwarnings("ignore")

BLOCKS = {
    "diagonal": [],
    "block beta/T1": [["beta", "T1"]],
    "block C0/beta/T1": [["C0", "beta", "T1"]],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--tune", type=int, default=400)
    ap.add_argument("--draws", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    ds = load_example()
    fits = {}
    print(
        "| variant | compile s | sampling s | max R-hat | min ESS bulk | divergences | steps/draw |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, blocks in BLOCKS.items():
        raw = json.loads(load_spec("liu2021_meta").text)
        raw["iiv"]["blocks"] = blocks
        if any("C0" in b for b in blocks):
            # the "cmax" coordinates keep C0 out of blocks; sample this block on log C0
            raw["sampling"]["parameterisation"] = "c0"
        spec = spec_from_dict(raw)
        f = fit(
            ds,
            spec,
            chains=args.chains,
            tune=args.tune,
            draws=args.draws,
            random_seed=args.seed,
            prior_draws=0,
        )
        fits[name] = f
        d = f.diagnostics
        steps = float(f.idata.sample_stats["n_steps"].mean())
        print(
            f"| {name} | {f.timings['compile_seconds']:.1f} | {f.timings['sampling_seconds']:.0f}"
            f" | {d.max_rhat:.3f} | {d.min_ess_bulk:.0f} | {d.divergences} | {steps:.0f} |",
            flush=True,
        )
    table, bad = compare_fits(fits)
    print()
    print(table.to_string())
    for model, patients in bad.items():
        if len(patients):
            print(f"{model}: Pareto k > 0.7 for {len(patients)} patient(s)")


if __name__ == "__main__":
    main()
