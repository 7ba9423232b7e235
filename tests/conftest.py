"""Shared test fixtures."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# The CLI prints through rich, which wraps lines at the console width; messages that name long
# temporary paths would then be split wherever the width falls. Tests read the messages, so
# give the console a fixed, wide width (a user's terminal keeps its own).
os.environ["COLUMNS"] = "240"

# PyTensor records the Python stack (8 frames) on every graph node it creates, for its error
# messages; building the gradient of a model (every test that compiles a logp or dlogp) spends
# about 40% of its time there. The tests do not read those traces: record none. Set before
# PyTensor is imported (test modules, doctests, subprocesses) and on its config if it already is.
os.environ["PYTENSOR_FLAGS"] = ",".join(
    f for f in (os.environ.get("PYTENSOR_FLAGS", ""), "traceback__limit=0") if f
)
if "pytensor" in sys.modules:
    sys.modules["pytensor"].config.traceback__limit = 0


def pytest_configure(config: pytest.Config) -> None:
    """In the fast tier, run PyTensor's Python implementations of its ops instead of C.

    A fast test evaluates a log density a handful of times, and compiling every op's C code
    with g++ on a cold cache (a fresh CI machine) cost more than the evaluations: measured on
    ``test_censored_residuals.py`` and the shipped specs' logp/gradient test, 373 s with C on
    a cold cache against 157 s without (``docs/benchmarks.md``, session 11). The rewrites,
    numerical stabilisation included, are PyTensor's default ones either way, and nutpie's
    Numba and the JAX backends do not use the C compiler. The slow tier (``-m slow``) keeps C:
    its approximate-inference fits evaluate the C graph thousands of times. Set here, before
    any test module (or a doctest's module) imports PyTensor; a ``cxx`` set by the caller's
    ``PYTENSOR_FLAGS`` is kept.
    """
    if "not slow" not in (config.option.markexpr or "") or "pytensor" in sys.modules:
        return
    flags = [f for f in os.environ["PYTENSOR_FLAGS"].split(",") if f]
    if not any(f.split("=")[0].strip() == "cxx" for f in flags):
        os.environ["PYTENSOR_FLAGS"] = ",".join([*flags, "cxx="])


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    """Write text (or bytes) to a file in ``tmp_path`` and return its path.

    ``write_csv("ID,TIME,DV\\n1,0,5\\n")`` writes ``data.csv``; ``name=`` picks another file name.
    """

    def write(content: str | bytes, name: str = "data.csv") -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return write


# ---------------------------------------------------------------------------------------------
# Analysis fixtures (issue 4: contrasts, CK metrics, LOO, virtual population).
# A fake fit = a real spec, dataset and model data with a posterior whose draws we choose, so
# analysis arithmetic is tested without sampling.
# ---------------------------------------------------------------------------------------------

ANALYSIS_TYPICAL = {
    "C0": 20.0,
    "beta": 0.45,
    "T1": 11.0,
    "alpha": 0.15,
    "rM": 0.003,
    "deltaM": 0.01,
}


def _analysis_simulation(
    n_per_trial: int = 6,
    times: tuple[float, ...] = (1, 4, 7, 10, 14, 21, 28, 60, 90, 180),
    sigma: float = 0.25,
    omega: dict[str, float] | None = None,
    random_seed: int = 11,
):
    import numpy as np
    import pandas as pd

    from bayes_cart.simulate import PopulationParameters, make_design, simulate_patients

    rng = np.random.default_rng(random_seed)
    trials = ["A", "B", "C"]
    n = n_per_trial * len(trials)
    cov = pd.DataFrame(
        {
            "TRIAL": np.repeat(trials, n_per_trial),
            "RESPONSE": rng.choice(["CR/PR", "PD/NR"], size=n).astype(object),
            "TUMOR_TYPE": np.repeat(["heme", "lymphoma", "solid"], n_per_trial),
            "DOSE": rng.lognormal(np.log(5e7), 0.5, size=n),
        }
    )
    pop = PopulationParameters(
        typical=ANALYSIS_TYPICAL,
        omega=omega if omega is not None else {"beta": 0.2, "T1": 0.15, "C0": 0.5, "alpha": 0.3},
        effects={"beta": {"RESPONSE": {"CR/PR": 0.3}}},
        sigma=sigma,
    )
    sim = simulate_patients(make_design(n, times, covariates=cov), pop, lloq=5.0, random_seed=rng)
    # two patients with unknown response (the model's explicit "unknown" level)
    unknown = sim.truth["ID"].iloc[[2, 9]].tolist()
    sim.data["RESPONSE"] = sim.data["RESPONSE"].astype(object)
    sim.data.loc[sim.data["ID"].isin(unknown), "RESPONSE"] = None
    return sim


@pytest.fixture(scope="session")
def analysis_data():
    """A small simulated dataset (18 patients, 3 trials, RESPONSE with missing values)."""
    import warnings

    from bayes_cart.data.dataset import load_dataset
    from bayes_cart.errors import DataWarning

    sim = _analysis_simulation()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        data = load_dataset(sim.data)
    return data, sim


@pytest.fixture(scope="session")
def analysis_spec():
    """liu2021 with beta ~ RESPONSE + TUMOR_TYPE, alpha ~ RESPONSE and a trial random effect."""
    from bayes_cart.model.spec import load_spec

    return load_spec("liu2021").with_overrides(
        covariates={"beta": "RESPONSE + TUMOR_TYPE", "alpha": "RESPONSE"},
        reference={"RESPONSE": "PD/NR", "TUMOR_TYPE": "heme"},
        group={"mode": "random", "parameters": ["beta"]},
    )


def build_fake_fit(dataset, spec, posterior, n_draws: int = 200, extra_groups=None):
    """A duck-typed Fit whose posterior holds the given draws.

    ``posterior`` maps variable names to a scalar (constant), an array (n_draws,) or an array
    (n_draws, k) for ``b_<p>`` (dim ``<p>_effect``), ``<p>_i`` / ``eta_<p>`` (dim patient) and
    ``u_<group>_<p>`` (dim of the group). A typical value ``<p>`` without ``log_<p>`` gets
    ``log_<p> = log(<p>)``. One chain.
    """
    from types import SimpleNamespace

    import arviz as az
    import numpy as np
    import xarray as xr

    from bayes_cart.model.model_data import prepare_model_data

    md = prepare_model_data(dataset, spec)
    gdim = (md.group_column or "group").lower()
    coords = {"chain": [0], "draw": np.arange(n_draws), "patient": list(md.patient_ids)}
    if md.group_levels:
        coords[gdim] = list(md.group_levels)
    for p, m in md.design.matrices.items():
        coords[f"{p}_effect"] = list(m.columns)
    values = dict(posterior)
    for name, v in list(values.items()):
        if f"log_{name}" not in values and not name.startswith(("log_", "b_", "u_", "omega_")):
            if not name.endswith("_i") and not name.startswith(("eta_", "corr_", "sigma")):
                values[f"log_{name}"] = np.log(v)
    data_vars = {}
    for name, v in values.items():
        arr = np.asarray(v, dtype=float)
        if name.startswith("b_"):
            label = name[2:]
            dim = f"{'C0' if label == 'Cmax' else label}_effect"
            extra = (dim,)
        elif name.endswith("_i") or name.startswith("eta_"):
            extra = ("patient",)
        elif name.startswith(f"u_{gdim}_"):
            extra = (gdim,)
        else:
            extra = ()
        shape = (n_draws, *(len(coords[d]) for d in extra))
        arr = np.broadcast_to(arr if arr.ndim != 1 or not extra else arr[None, :], shape)
        data_vars[name] = (("chain", "draw", *extra), arr[None].copy())
    used = {d for _, (dims, _) in data_vars.items() for d in dims}
    post = xr.Dataset(data_vars, coords={k: v for k, v in coords.items() if k in used})
    idata = az.InferenceData(posterior=post, **(extra_groups or {}))
    from bayes_cart.inference.diagnostics import Diagnostics

    diag = Diagnostics(
        max_rhat=1.0,
        min_ess_bulk=float(n_draws),
        min_ess_tail=float(n_draws),
        divergences=0,
        min_bfmi=1.0,
        treedepth_saturation=0.0,
    )
    return SimpleNamespace(
        idata=idata, spec=spec, dataset=dataset, model_data=md, diagnostics=diag, timings={}
    )


@pytest.fixture(scope="session")
def fake_fit_factory():
    """The :func:`build_fake_fit` builder."""
    return build_fake_fit


# ---------------------------------------------------------------------------------------------
# Predictive-check fixtures (issue 4: PPC, VPC, GOF). A "point-mass fit" is a real Fit whose
# every posterior draw equals the truth that simulated the data (population values and each
# patient's parameters); its posterior_predictive and log_likelihood groups are computed from
# that truth as the sampler would. ``overrides`` replaces posterior values (a wrong model).
# ---------------------------------------------------------------------------------------------

CHECKS_TYPICAL = {"C0": 30.0, "beta": 0.4, "T1": 12.0, "alpha": 0.12, "rM": 0.002, "deltaM": 0.006}
CHECKS_OMEGA = {"C0": 0.5, "beta": 0.25, "T1": 0.2, "alpha": 0.3, "rM": 0.4, "deltaM": 0.3}
CHECKS_TIMES = (1, 3, 7, 10, 14, 21, 28, 60, 90, 180)


def checks_simulation(
    n_patients: int = 60,
    sigma: float = 0.4,
    lloq: float = 20.0,
    times: tuple[float, ...] = CHECKS_TIMES,
    random_seed: int = 2024,
):
    """Simulate patients from the checks population (ARM: a covariate the model ignores)."""
    import numpy as np
    import pandas as pd

    from bayes_cart.simulate import PopulationParameters, make_design, simulate_patients

    pop = PopulationParameters(
        typical=CHECKS_TYPICAL,
        omega=CHECKS_OMEGA,
        correlation={("beta", "T1"): -0.5},
        sigma=sigma,
    )
    arm = pd.DataFrame({"ARM": np.where(np.arange(n_patients) % 2 == 0, "a", "b")})
    design = make_design(n_patients, times, covariates=arm)
    return simulate_patients(design, pop, lloq=lloq, random_seed=random_seed)


def point_mass_fit(sim, *, n_draws: int = 100, overrides=None, random_seed: int = 0):
    """A Fit of ``sim.data`` under liu2021 whose posterior is a point mass at the truth."""
    import warnings

    import arviz as az
    import numpy as np
    import xarray as xr

    from bayes_cart.data.dataset import load_dataset
    from bayes_cart.errors import DataWarning
    from bayes_cart.inference.diagnostics import Diagnostics
    from bayes_cart.inference.sampling import Fit
    from bayes_cart.kinetics import get_kinetics
    from bayes_cart.model.likelihood import CensoringIndex, censored_loglik
    from bayes_cart.model.model_data import prepare_model_data
    from bayes_cart.model.spec import load_spec

    spec = load_spec("liu2021")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        dataset = load_dataset(sim.data)
    md = prepare_model_data(dataset, spec)
    pop = sim.population
    truth = sim.truth.set_index("ID").loc[list(md.patient_ids)]
    values: dict[str, float | np.ndarray] = {}
    for p, v in pop.typical.items():
        values[p] = v
        values[f"log_{p}"] = np.log(v)
        values[f"omega_{p}"] = pop.omega.get(p, 0.0)
    for (a, b), r in pop.correlation.items():
        values[f"corr_{a}_{b}"] = r
    values["sigma"] = pop.sigma
    kin = get_kinetics("liu2021")
    for p in kin.parameters:
        values[f"{p}_i"] = truth[p].to_numpy(dtype=float)
    values.update(overrides or {})
    shape = (1, n_draws)
    data_vars = {}
    for name, v in values.items():
        arr = np.asarray(v, dtype=float)
        if arr.ndim == 0:
            data_vars[name] = (("chain", "draw"), np.full(shape, float(arr)))
        else:
            data_vars[name] = (
                ("chain", "draw", "patient"),
                np.broadcast_to(arr, (*shape, len(arr))).copy(),
            )
    coords = {"chain": [0], "draw": np.arange(n_draws), "patient": list(md.patient_ids)}
    post = xr.Dataset(data_vars, coords=coords)
    params = {p: np.asarray(values[f"{p}_i"])[md.patient_index] for p in kin.parameters}
    mu = np.asarray(kin.solve(md.time, params)["log_total"])
    sigma = float(values["sigma"])
    rng = np.random.default_rng(random_seed)
    pp = mu[None, :] + sigma * rng.standard_normal((n_draws, len(mu)))
    idx = CensoringIndex.from_arrays(md.cens, md.log_limit)
    ll = censored_loglik(md.log_dv, mu, sigma, idx, md.log_limit)
    obs_coords = {"chain": [0], "draw": np.arange(n_draws), "obs": md.obs_rows}
    idata = az.InferenceData(
        posterior=post,
        posterior_predictive=xr.Dataset(
            {"log_dv": (("chain", "draw", "obs"), pp[None])}, coords=obs_coords
        ),
        log_likelihood=xr.Dataset(
            {"log_dv": (("chain", "draw", "obs"), np.broadcast_to(ll, (*shape, len(ll))).copy())},
            coords=obs_coords,
        ),
        observed_data=xr.Dataset({"log_dv": ("obs", md.log_dv)}, coords={"obs": md.obs_rows}),
    )
    diag = Diagnostics(
        max_rhat=1.0,
        min_ess_bulk=1e3,
        min_ess_tail=1e3,
        divergences=0,
        min_bfmi=1.0,
        treedepth_saturation=0.0,
    )
    return Fit(idata=idata, spec=spec, dataset=dataset, model_data=md, diagnostics=diag)


@pytest.fixture(scope="session")
def checks_sim():
    """60 simulated patients (10 samples each, LLOQ 20) from the checks population."""
    return checks_simulation()


@pytest.fixture(scope="session")
def checks_fit(checks_sim):
    """Point-mass fit at the truth of :func:`checks_sim`."""
    return point_mass_fit(checks_sim)
