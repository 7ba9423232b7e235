"""A kinetic structure of your own, without a closed form, fitted with the linear solver.

Liu et al.'s model lets memory cells only die. Here memory cells may also re-enter the effector
pool at rate ``rE`` during contraction (a linear phase with no closed form in bayes_cart):

    dE/dt = -(alpha + deltaE + rM) E + rE M,     dM/dt = rM E - (deltaM + rE) M.

The script registers the structure from its right-hand sides, checks that the
matrix-exponential route (``solver="linear"``, NONMEM's ADVAN5/7) and adaptive diffrax
(``solver="ode"``) agree, fits it to part of the bundled example with the linear solver, and
runs the analyses on the fit, all with the solver the fit was sampled with (the fit file
records it): goodness of fit, a VPC, CK metrics read off the solved curves (the structure has
no analytic metrics), and with ``--report`` the HTML report.

    python examples/custom_linear_structure.py --patients 40 --report reversion.html
    python examples/custom_linear_structure.py --patients 6 --chains 2 --tune 50 --draws 30
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np

from bayes_cart.analysis.summary import population_summary
from bayes_cart.example import load_example
from bayes_cart.inference.sampling import fit
from bayes_cart.kinetics import LIU_PHASES, Phase, register_ode_kinetics
from bayes_cart.kinetics.structures.liu2021 import liu_log_peak_shift
from bayes_cart.model.spec import load_spec
from bayes_cart.units import DELTA_E_PER_DAY

PARAMETERS = ("C0", "k", "T0", "beta", "T1", "alpha", "rM", "deltaM", "rE", "deltaE")


def contraction_with_reversion(t, y, p):
    """Contraction phase: effector death and conversion to memory, memory reverting at rE."""
    e, m = y[0], y[1]
    lam = p["alpha"] + p["deltaE"] + p["rM"]
    return jnp.stack([-lam * e + p["rE"] * m, p["rM"] * e - (p["deltaM"] + p["rE"]) * m])


def register() -> None:
    """Register ``liu_reversion``: Liu's first two phases, the new contraction phase."""
    register_ode_kinetics(
        "liu_reversion",
        PARAMETERS,
        (LIU_PHASES[0], LIU_PHASES[1], Phase("T1", "inf", contraction_with_reversion, True)),
        y0=lambda p: jnp.stack([p["C0"], 0.0 * p["C0"]]),
        n_states=2,
        defaults={"k": 0.0, "T0": 0.0, "deltaE": DELTA_E_PER_DAY},
        description="Liu et al. with memory cells re-entering the effector pool (rE)",
        overwrite=True,
        # Liu's distribution and expansion phases: same phase parameters, same peak identity
        distribution_parameters=("k", "T0"),
        log_peak_shift=liu_log_peak_shift,
    )


def compare_solvers() -> float:
    """Largest |log(E+M)| difference between the linear and the diffrax solvers."""
    from bayes_cart.kinetics import get_kinetics

    model = get_kinetics("liu_reversion")
    p = dict(C0=30.0, beta=0.4, T1=12.0, alpha=0.12, rM=0.002, deltaM=0.004, rE=0.01)
    t = np.array([0.0, 5.0, 12.0, 20.0, 60.0, 180.0, 365.0])
    linear = np.asarray(model.solve(t, p, solver="linear")["log_total"])
    ode = np.asarray(model.solve(t, p, solver="ode")["log_total"])
    print("day      " + "  ".join(f"{x:8.0f}" for x in t))
    print("E+M      " + "  ".join(f"{x:8.3g}" for x in np.exp(linear)))
    return float(np.max(np.abs(linear - ode)))


def main(argv: list[str] | None = None):
    """Register, compare the two ODE solvers, fit with the linear one; return the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--report", default=None, help="write the HTML report to this file")
    args = parser.parse_args(argv)

    register()
    print(f"linear vs diffrax, max |difference in log(E+M)|: {compare_solvers():.1e}")

    rE = {
        "description": "memory-to-effector reversion rate constant",
        "unit": "1/day",
        "typical": {"dist": "LogNormal", "median": 0.005, "sigma": 1.5},
    }
    spec = load_spec("liu2021").replace(
        source="examples/custom_linear_structure.py",
        name="liu_reversion",
        kinetics="liu_reversion",
        parameters={"rE": rE},
    )
    data = load_example()
    ids = [i for i in data.patient_ids if not i.startswith("DLBCL")][::4][: args.patients]
    result = fit(
        data.subset(ids),
        spec,
        solver="linear",
        chains=args.chains,
        tune=args.tune,
        draws=args.draws,
        random_seed=args.seed,
    )
    summary = population_summary(result.idata)
    print(summary.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    analyses = analyse(result, args.report)
    return summary, analyses


def analyse(result, report: str | None) -> dict:
    """GOF, VPC and CK metrics of the fit (and the report): what a user runs next."""
    from bayes_cart.analysis.ck_metrics import individual_metrics
    from bayes_cart.checks.gof import gof_table
    from bayes_cart.checks.vpc import vpc, vpc_coverage

    gof = gof_table(result, n_draws=50, n_simulations=50)
    vpc_result = vpc(result, n_replicates=50, n_bins=5)
    metrics = individual_metrics(result, n_draws=50)
    cmax = metrics[metrics["metric"] == "Cmax"]
    print(
        f"GOF: median IWRES {gof['IWRES'].median():.2f}, NPD mean {gof['NPD'].mean():.2f}; "
        f"VPC coverage {vpc_coverage(vpc_result)}; median Cmax {cmax['q50'].median():.3g}"
    )
    out = {"gof": gof, "vpc": vpc_result, "metrics": metrics}
    if report:
        from bayes_cart.report import write_report

        out["report"] = write_report(result, report, n_draws=50, n_vpc_replicates=50)
        print(f"report: {out['report']}")
    return out


if __name__ == "__main__":
    main()
