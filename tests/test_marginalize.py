"""``covariates.missing = "marginalize"``: a missing categorical covariate summed over its levels.

For a patient whose RESPONSE is missing the model's density is
``log sum_l pi_l p(random effects_i, data_i | level l)`` with an estimated prevalence ``pi``
(``prevalence_RESPONSE``, Dirichlet(1, ..., 1)); a patient with an observed level adds
``log pi_l``. The tests check the density exactly (a numpy computation that enumerates the
levels by hand, and the identity "marginal density = log-sum-exp over the complete data sets
that fill the missing values in every way"), the spec keys, the refusals, what a saved fit
keeps, and (slow) recovery by simulation.
"""

from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import logsumexp, softmax

from bayes_cart.data.dataset import load_dataset
from bayes_cart.errors import DataWarning, SpecError
from bayes_cart.kinetics import get_kinetics
from bayes_cart.model.build import build_model
from bayes_cart.model.likelihood import CensoringIndex, censored_loglik
from bayes_cart.model.model_data import prepare_model_data
from bayes_cart.model.spec import load_spec, spec_from_dict
from bayes_cart.simulate import PopulationParameters, make_design, simulate_patients

TYPICAL = {"C0": 30.0, "beta": 0.4, "T1": 12.0, "alpha": 0.12, "rM": 0.002, "deltaM": 0.006}
TIMES = (1, 4, 7, 10, 14, 28, 60, 90)
FAST = {"mode": "FAST_COMPILE"}


def _frame(n: int = 5, seed: int = 1) -> pd.DataFrame:
    """A small simulated data set with RESPONSE, TUMOR_TYPE and TRIAL (none missing yet)."""
    cov = pd.DataFrame(
        {
            "RESPONSE": (["CR/PR", "PD/NR"] * n)[:n],
            "TUMOR_TYPE": (["heme", "heme", "solid"] * n)[:n],
            "TRIAL": (["A", "B"] * n)[:n],
        }
    )
    pop = PopulationParameters(
        typical=TYPICAL,
        omega={"C0": 0.5, "beta": 0.3, "T1": 0.2, "alpha": 0.3},
        effects={"beta": {"RESPONSE": {"CR/PR": 0.5}}, "alpha": {"RESPONSE": {"CR/PR": -0.4}}},
        sigma=0.3,
    )
    design = make_design(n, TIMES, covariates=cov)
    return simulate_patients(design, pop, lloq=5.0, random_seed=seed).data


def _hide(frame: pd.DataFrame, cells: dict[str, list[str]]) -> pd.DataFrame:
    """Set ``{column: [patient IDs]}`` to missing."""
    out = frame.copy()
    for col, ids in cells.items():
        out[col] = out[col].astype(object)
        out.loc[out["ID"].isin(ids), col] = None
    return out


def _fill(frame: pd.DataFrame, values: dict[tuple[str, str], str]) -> pd.DataFrame:
    """Set ``{(patient ID, column): level}``."""
    out = frame.copy()
    for (pid, col), level in values.items():
        out.loc[out["ID"] == pid, col] = level
    return out


def _dataset(frame: pd.DataFrame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_dataset(frame)


def _spec(base: str = "liu2021", **sections) -> object:
    raw = json.loads(load_spec(base).text)
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return spec_from_dict(raw)


def _values(model, names, point):
    """Natural-scale values of model variables at a point of the value variables."""
    fn = model.compile_fn(
        model.replace_rvs_by_values([model[n] for n in names]),
        inputs=model.value_vars,
        on_unused_input="ignore",
        point_fn=True,
        **FAST,
    )
    return dict(zip(names, fn(point), strict=True))


def _jittered(model, seed: int, scale: float = 0.3):
    rng = np.random.default_rng(seed)
    return {k: v + rng.normal(0, scale, np.shape(v)) for k, v in model.initial_point().items()}


def _logp(model, point) -> float:
    """Joint density on the variables' natural scale (no Jacobian of the transforms).

    The terms are summed here: the Python backend of FAST_COMPILE cannot add 30 terms at once.
    """
    terms = model.logp(sum=False, jacobian=False)
    fn = model.compile_fn(
        [t.sum() for t in terms], inputs=model.value_vars, on_unused_input="ignore", **FAST
    )
    return float(sum(np.sum(t) for t in fn(point)))


# ---------------------------------------------------------------------------------------------
# 1. exactness
# ---------------------------------------------------------------------------------------------


MISSING = ["P002", "P003"]  # one PD/NR, one CR/PR


def test_density_equals_levels_enumerated_by_hand():
    """beta (non-centred in the spec) and alpha (centred) both depend on RESPONSE, missing for
    two of five patients. By hand: every prior, the standard-normal z's of the complete
    patients, the complete patients' log alpha_i ~ N(mu_alpha(l_i), omega), log pi_{l_i} for
    them, the M3 likelihood of everyone, and per missing patient the log-sum-exp over both
    levels of log pi_l + log N(log beta_i; mu_beta(l)) + log N(log alpha_i; mu_alpha(l)) (the
    same level for beta and alpha). The posterior level probabilities stored are the softmax of
    those terms."""
    ds = _dataset(_hide(_frame(), {"RESPONSE": MISSING}))
    spec = _spec(
        covariates={
            "formulas": {"beta": "RESPONSE", "alpha": "RESPONSE"},
            "reference": {"RESPONSE": "PD/NR"},
            "missing": "marginalize",
        },
        iiv={"blocks": []},
        sampling={"parameterisation": "c0", "centered": ["alpha"]},
    )
    model = build_model(ds, spec)
    md = model.bayes_cart_data
    assert model.coords["RESPONSE_level"] == ("PD/NR", "CR/PR")
    assert model.coords["patient_missing_RESPONSE"] == tuple(MISSING)
    assert model.coords["beta_effect"] == ("RESPONSE[CR/PR]",)  # no 'unknown' level
    # the missing patients' beta is sampled centred (log_beta_i), the others' non-centred
    assert int(model["log_beta_i"].shape.eval()[0]) == 2
    assert int(model["z_beta"].shape.eval()[0]) == 3
    point = _jittered(model, seed=3)
    doc = spec.doc
    estimated = ["C0", "beta", "T1", "alpha", "rM", "deltaM"]
    names = (
        [f"log_{p}" for p in estimated]
        + [f"omega_{p}" for p in estimated]
        + ["b_beta", "b_alpha", "sigma", "prevalence_RESPONSE", "p_RESPONSE_level"]
        + ["z_C0", "z_T1", "z_rM", "z_deltaM", "z_beta", "log_beta_i", "log_alpha_i"]
    )
    v = _values(model, names, point)

    lp = 0.0
    for p in estimated:
        prior = doc.parameters[p]
        lp += stats.norm.logpdf(v[f"log_{p}"], np.log(prior.typical.median), prior.typical.sigma)
        lp += stats.halfnorm.logpdf(v[f"omega_{p}"], scale=prior.iiv.sigma)
    lp += (
        stats.norm.logpdf(v["b_beta"], 0, 0.5).sum() + stats.norm.logpdf(v["b_alpha"], 0, 0.5).sum()
    )
    lp += stats.halfnorm.logpdf(v["sigma"], scale=1.0)
    pi = v["prevalence_RESPONSE"]
    lp += stats.dirichlet.logpdf(pi, [1.0, 1.0])
    for z in ("z_C0", "z_T1", "z_rM", "z_deltaM", "z_beta"):
        lp += stats.norm.logpdf(v[z]).sum()

    ids = list(md.patient_ids)
    response = ds.patients.loc[ids, "RESPONSE"]
    miss = np.flatnonzero(response.isna().to_numpy())
    done = np.flatnonzero(response.notna().to_numpy())
    x_obs = (response.iloc[done] == "CR/PR").to_numpy(float)
    level_index = x_obs.astype(int)  # PD/NR = 0, CR/PR = 1
    lp += np.log(pi[level_index]).sum()

    def mu(p, x):
        return v[f"log_{p}"] + v[f"b_{p}"][0] * x

    log_alpha = v["log_alpha_i"]
    lp += stats.norm.logpdf(log_alpha[done], mu("alpha", x_obs), v["omega_alpha"]).sum()
    weights = np.zeros((len(miss), 2))
    for j, i in enumerate(miss):
        for level in (0, 1):
            weights[j, level] = (
                np.log(pi[level])
                + stats.norm.logpdf(v["log_beta_i"][j], mu("beta", level), v["omega_beta"])
                + stats.norm.logpdf(log_alpha[i], mu("alpha", level), v["omega_alpha"])
            )
    lp += logsumexp(weights, axis=1).sum()

    log_i = {p: v[f"log_{p}"] + v[f"omega_{p}"] * v[f"z_{p}"] for p in ("C0", "T1", "rM", "deltaM")}
    log_beta = np.zeros(len(ids))
    log_beta[done] = mu("beta", x_obs) + v["omega_beta"] * v["z_beta"]
    log_beta[miss] = v["log_beta_i"]
    log_i["beta"], log_i["alpha"] = log_beta, log_alpha
    n_obs = len(md.time)
    params = {p: np.exp(x)[md.patient_index] for p, x in log_i.items()}
    params |= {"deltaE": np.full(n_obs, doc.parameters["deltaE"].fixed)}
    params |= {"k": np.zeros(n_obs), "T0": np.zeros(n_obs)}
    mu_obs = get_kinetics("liu2021").solve(md.time, params)["log_total"]
    index = CensoringIndex.from_arrays(md.cens, md.log_limit)
    lp += censored_loglik(md.log_dv, mu_obs, v["sigma"], index, md.log_limit).sum()

    assert abs(_logp(model, point) - lp) < 1e-8
    np.testing.assert_allclose(v["p_RESPONSE_level"], softmax(weights, axis=1), atol=1e-12)
    grad = model.compile_dlogp(**FAST)(point)
    assert np.all(np.isfinite(grad))


def _complete_identity(spec, frame, cells, monkeypatch=None, weights=None):
    """Marginal density at a point vs log-sum-exp of the complete-data densities.

    Every way of filling the hidden ``cells`` gives a complete data set whose model (with the
    same coordinates) has density ``f_a``; with the prevalence terms ``sum log pi`` of every
    patient, ``log sum_a exp(f_a + sum log pi)`` plus the Dirichlet densities is the marginal
    density.
    """
    if weights is not None:
        import bayes_cart.model.build as model_mod

        monkeypatch.setattr(
            model_mod,
            "_partial_weights",
            lambda spec, md, names: {k: w.copy() for k, w in weights.items()},
        )
    hidden = _hide(frame, cells)
    model = build_model(_dataset(hidden), spec)
    point = _jittered(model, seed=7, scale=0.2)
    columns = sorted(cells)
    levels = {c: model.coords[f"{c}_level"] for c in columns}
    pis = _values(model, [f"prevalence_{c}" for c in columns], point)
    pairs = sorted({(pid, c) for c, ids in cells.items() for pid in ids})
    terms = []
    for combo in itertools.product(*[levels[c] for _, c in pairs]):
        filled = _fill(frame, dict(zip(pairs, combo, strict=True)))
        complete = build_model(_dataset(filled), spec)
        assert not any(n.startswith("prevalence_") for n in complete.named_vars)
        sub = {k: v for k, v in point.items() if not k.startswith("prevalence_")}
        assert set(sub) == {v.name for v in complete.value_vars}  # the initial point's keys
        ids = list(complete.bayes_cart_data.patient_ids)
        prevalence = 0.0
        for c in columns:
            per_patient = filled.groupby("ID")[c].first().loc[ids]
            codes = [levels[c].index(x) for x in per_patient]
            prevalence += np.log(pis[f"prevalence_{c}"][codes]).sum()
        terms.append(_logp(complete, sub) + prevalence)
    dirichlet = sum(
        stats.dirichlet.logpdf(pis[f"prevalence_{c}"], np.ones(len(levels[c]))) for c in columns
    )
    expected = logsumexp(terms) + dirichlet
    got = _logp(model, point)
    assert abs(got - expected) < 1e-8, (got, expected, terms)
    return model, point


def test_liu2021_meta_coordinates_equal_the_complete_data_mixture():
    """liu2021_meta: cmax coordinates, centred (beta, T1) block, centred alpha, trial random
    effects on beta and alpha; RESPONSE (beta, alpha) missing for two patients."""
    spec = _spec(
        "liu2021_meta",
        covariates={"missing": "marginalize"},
        distribution_phase={"enabled_if": ""},
    )
    _complete_identity(spec, _frame(6), {"RESPONSE": ["P002", "P005"]})


def test_patient_missing_two_covariates_sums_over_their_product():
    """A patient missing RESPONSE and TUMOR_TYPE (beta uses both) gets four components; another
    misses RESPONSE only."""
    spec = _spec(
        covariates={
            "formulas": {"beta": "RESPONSE + TUMOR_TYPE", "alpha": "RESPONSE"},
            "reference": {"RESPONSE": "PD/NR", "TUMOR_TYPE": "heme"},
            "missing": "marginalize",
        },
    )
    model, point = _complete_identity(
        spec, _frame(6), {"RESPONSE": ["P002", "P004"], "TUMOR_TYPE": ["P004"]}
    )
    v = _values(model, ["p_RESPONSE_level", "p_TUMOR_TYPE_level"], point)
    assert v["p_RESPONSE_level"].shape == (2, 2) and v["p_TUMOR_TYPE_level"].shape == (1, 2)
    np.testing.assert_allclose(v["p_RESPONSE_level"].sum(axis=1), 1.0)


def test_partially_centred_stein2019_equals_the_complete_data_mixture(monkeypatch):
    """stein2019 (partial centring): the missing patients' weights are 1 (centred), the others
    keep theirs."""
    spec = _spec(
        "stein2019",
        covariates={
            "formulas": {"Cmax": "RESPONSE", "alpha": "RESPONSE"},
            "reference": {"RESPONSE": "PD/NR"},
            "missing": "marginalize",
        },
    )
    rng = np.random.default_rng(2)
    n = 5
    weights = {}
    for p in ("Cmax", "Tmax", "foldx", "alpha", "beta", "FB"):
        w = rng.uniform(0.1, 0.9, n)
        w[[1, 2]] = 1.0
        weights[p] = w
    model, _ = _complete_identity(spec, _frame(n), {"RESPONSE": MISSING}, monkeypatch, weights)
    assert model.bayes_cart_partial_weights["Cmax"][[1, 2]].tolist() == [1.0, 1.0]


def test_partial_centring_weights_of_missing_patients_become_one():
    """Only the weights of the parameters that use RESPONSE, and only the missing patient's."""
    ds = _dataset(_hide(_frame(5), {"RESPONSE": ["P002"]}))
    covariates = {"formulas": {"Cmax": "RESPONSE"}, "reference": {"RESPONSE": "PD/NR"}}
    level = build_model(ds, _spec("stein2019", covariates=covariates))
    marg = build_model(ds, _spec("stein2019", covariates={**covariates, "missing": "marginalize"}))
    w0, w1 = level.bayes_cart_partial_weights, marg.bayes_cart_partial_weights
    assert w1["Cmax"][1] == 1.0
    np.testing.assert_array_equal(np.delete(w1["Cmax"], 1), np.delete(w0["Cmax"], 1))
    np.testing.assert_array_equal(w1["Tmax"], w0["Tmax"])


def test_fold_coordinates_equal_the_complete_data_mixture():
    spec = _spec(
        covariates={
            "formulas": {"beta": "RESPONSE", "T1": "RESPONSE"},
            "reference": {"RESPONSE": "PD/NR"},
            "missing": "marginalize",
        },
        sampling={"parameterisation": "fold"},
    )
    _complete_identity(spec, _frame(5), {"RESPONSE": ["P003"]})


# ---------------------------------------------------------------------------------------------
# 2. spec keys and refusals
# ---------------------------------------------------------------------------------------------


def test_spec_accepts_marginalize_and_rejects_unknown_values():
    spec = _spec(covariates={"missing": "marginalize"})
    assert spec.doc.covariates.missing == "marginalize"
    assert load_spec("liu2021").doc.covariates.missing == "level"
    with pytest.raises(SpecError, match=r"covariates\.missing"):
        _spec(covariates={"missing": "impute"})


def test_level_stays_the_default_and_marginalize_drops_the_unknown_level():
    frame = _hide(_frame(), {"RESPONSE": MISSING})
    covariates = {"formulas": {"beta": "RESPONSE"}, "reference": {"RESPONSE": "PD/NR"}}
    level = prepare_model_data(_dataset(frame), _spec(covariates=covariates))
    assert level.design.effect_names("beta") == ["RESPONSE[CR/PR]", "RESPONSE[unknown]"]
    assert level.marginal is None
    marg = prepare_model_data(
        _dataset(frame), _spec(covariates={**covariates, "missing": "marginalize"})
    )
    assert marg.design.effect_names("beta") == ["RESPONSE[CR/PR]"]
    assert marg.marginal.columns == ("RESPONSE",)
    assert any("RESPONSE" in n and "marginalised" in n for n in marg.notes)


def test_continuous_covariates_keep_the_median_under_marginalize():
    frame = _frame()
    frame["AGE"] = frame["ID"].map(
        {"P001": 40.0, "P002": 50.0, "P003": np.nan, "P004": 70.0, "P005": 80.0}
    )
    spec = _spec(covariates={"formulas": {"beta": "AGE"}, "missing": "marginalize"})
    md = prepare_model_data(_dataset(frame), spec)
    assert md.marginal is None
    assert md.design.matrices["beta"].loc["P003", "AGE"] == 60.0
    assert any("AGE" in n and "median" in n for n in md.notes)


def test_parameter_without_iiv_that_uses_a_marginalised_covariate_is_refused():
    raw = json.loads(load_spec("liu2021").text)
    raw["parameters"]["rM"].pop("iiv")
    raw["covariates"] = {"formulas": {"rM": "RESPONSE"}, "missing": "marginalize"}
    spec = spec_from_dict(raw)
    with pytest.raises(SpecError, match=r"covariates\.missing") as err:
        prepare_model_data(_dataset(_hide(_frame(), {"RESPONSE": MISSING})), spec)
    assert "parameters.rM.iiv" in str(err.value)


def test_too_many_level_combinations_in_one_patient_is_refused(monkeypatch):
    import bayes_cart.model.marginal as marginal

    monkeypatch.setattr(marginal, "MAX_COMPONENTS", 3)
    spec = _spec(
        covariates={"formulas": {"beta": "RESPONSE + TUMOR_TYPE"}, "missing": "marginalize"}
    )
    frame = _hide(_frame(), {"RESPONSE": ["P002"], "TUMOR_TYPE": ["P002"]})
    with pytest.raises(SpecError, match=r"covariates\.missing") as err:
        prepare_model_data(_dataset(frame), spec)
    assert "RESPONSE" in str(err.value) and "TUMOR_TYPE" in str(err.value)
    assert "P002" in str(err.value)


def test_a_categorical_column_missing_in_every_patient_is_refused():
    from bayes_cart.model.covariates import build_covariate_design

    patients = pd.DataFrame({"RESPONSE": pd.Series([None, None], dtype=object)}, index=["1", "2"])
    with pytest.raises(SpecError, match=r"covariates\.missing.*'RESPONSE'"):
        build_covariate_design(patients, {"beta": "RESPONSE"}, missing="marginalize")


# ---------------------------------------------------------------------------------------------
# 4. a saved fit keeps the marginalisation; predictions for new patients mix over the prevalence
# ---------------------------------------------------------------------------------------------


def _fake_marginal_fit(fake_fit_factory, n_draws: int = 400):
    """A fit-shaped object with draws we choose: b_beta = 1, prevalence (0.3, 0.7)."""
    import xarray as xr

    ds = _dataset(_hide(_frame(6), {"RESPONSE": ["P002", "P005"]}))
    spec = _spec(
        covariates={
            "formulas": {"beta": "RESPONSE"},
            "reference": {"RESPONSE": "PD/NR"},
            "missing": "marginalize",
        },
    )
    posterior = {p: v for p, v in TYPICAL.items()}
    posterior |= {f"omega_{p}": 0.3 for p in TYPICAL} | {"sigma": 0.3, "corr_beta_T1": 0.0}
    posterior |= {"b_beta": np.ones((n_draws, 1))}
    fit = fake_fit_factory(ds, spec, posterior, n_draws=n_draws)
    md = fit.model_data
    levels = list(md.marginal.levels["RESPONSE"])
    missing = [md.patient_ids[i] for i in md.marginal.patients]
    prev = np.broadcast_to([0.3, 0.7], (1, n_draws, 2)).copy()
    prob = np.broadcast_to([[0.9, 0.1], [0.2, 0.8]], (1, n_draws, 2, 2)).copy()
    fit.idata.posterior["prevalence_RESPONSE"] = xr.DataArray(
        prev, dims=("chain", "draw", "RESPONSE_level"), coords={"RESPONSE_level": levels}
    )
    fit.idata.posterior["p_RESPONSE_level"] = xr.DataArray(
        prob,
        dims=("chain", "draw", "patient_missing_RESPONSE", "RESPONSE_level"),
        coords={"RESPONSE_level": levels, "patient_missing_RESPONSE": missing},
    )
    return fit


def test_saved_fit_keeps_prevalence_and_level_probabilities(fake_fit_factory, tmp_path):
    from bayes_cart.analysis.summary import population_summary
    from bayes_cart.inference.diagnostics import population_variables
    from bayes_cart.inference.io import load_fit, save_fit
    from bayes_cart.inference.sampling import Fit

    fake = _fake_marginal_fit(fake_fit_factory)
    fit = Fit(
        idata=fake.idata,
        spec=fake.spec,
        dataset=fake.dataset,
        model_data=fake.model_data,
        diagnostics=fake.diagnostics,
    )
    loaded = load_fit(save_fit(fit, tmp_path / "fit.nc"))
    post = loaded.idata.posterior
    assert list(post["prevalence_RESPONSE"].coords["RESPONSE_level"].values) == ["PD/NR", "CR/PR"]
    assert list(post["p_RESPONSE_level"].coords["patient_missing_RESPONSE"].values) == [
        "P002",
        "P005",
    ]
    md = loaded.model_data
    assert md.design.missing == "marginalize"
    assert md.marginal is not None and md.marginal.columns == ("RESPONSE",)
    assert md.design.effect_names("beta") == ["RESPONSE[CR/PR]"]
    table = population_summary(loaded.idata)
    row = table.set_index("parameter").loc["prevalence_RESPONSE[CR/PR]"]
    assert row["mean"] == pytest.approx(0.7)
    assert "p_RESPONSE_level" not in population_variables(loaded.idata)


def test_new_patient_with_missing_response_mixes_over_the_prevalence(fake_fit_factory):
    """population_parameters: a new patient without RESPONSE gets the CR/PR effect in a
    fraction of the draws equal to the prevalence (0.7); with RESPONSE given, in all or none."""
    from bayes_cart.predict import population_parameters

    fit = _fake_marginal_fit(fake_fit_factory, n_draws=2000)
    patients = pd.DataFrame(
        {"RESPONSE": [None, "CR/PR", "PD/NR", "unknown"]}, index=["a", "b", "c", "d"]
    )
    values = population_parameters(fit, patients, n_draws=None, iiv=False, random_seed=4)
    shift = np.log(values["beta"]) - np.log(TYPICAL["beta"])
    assert np.allclose(shift[:, 1], 1.0) and np.allclose(shift[:, 2], 0.0)
    for j in (0, 3):  # missing, or the text "unknown" (a contrast's group of missing values)
        assert set(np.round(shift[:, j], 8)) == {0.0, 1.0}
        assert abs((shift[:, j] > 0.5).mean() - 0.7) < 0.04


# ---------------------------------------------------------------------------------------------
# 3. recovery by simulation (samples: slow)
# ---------------------------------------------------------------------------------------------


RECOVERY_EFFECT = 0.8
RECOVERY_OMEGA = {"C0": 0.5, "beta": 0.2, "T1": 0.2, "alpha": 0.4, "rM": 0.4, "deltaM": 0.4}


@pytest.fixture(scope="module")
def recovery():
    """50 patients, 40% CR/PR, beta x e^0.8 for CR/PR; RESPONSE hidden in 15 (30%)."""
    from bayes_cart.inference.sampling import fit

    n = 50
    rng = np.random.default_rng(20250110)
    response = np.where(rng.uniform(size=n) < 0.4, "CR/PR", "PD/NR")
    pop = PopulationParameters(
        typical=TYPICAL,
        omega=RECOVERY_OMEGA,
        effects={"beta": {"RESPONSE": {"CR/PR": RECOVERY_EFFECT}}},
        sigma=0.3,
    )
    design = make_design(
        n,
        (1, 3, 5, 7, 10, 14, 21, 28, 45, 60, 90, 180),
        covariates=pd.DataFrame({"RESPONSE": response}),
    )
    sim = simulate_patients(design, pop, lloq=5.0, random_seed=rng)
    truth = sim.truth.set_index("ID")["RESPONSE"]
    hidden = list(rng.choice(truth.index.to_numpy(), size=15, replace=False))
    ds = _dataset(_hide(sim.data, {"RESPONSE": hidden}))
    spec = _spec(
        covariates={
            "formulas": {"beta": "RESPONSE"},
            "reference": {"RESPONSE": "PD/NR"},
            "missing": "marginalize",
        },
    )
    result = fit(
        ds,
        spec,
        chains=2,
        tune=300,
        draws=200,
        random_seed=3,
        prior_draws=0,
        extend=False,  # the point is recovery, not the gate's extra chains
        retry=False,
    )
    return result, truth, hidden, float((response == "CR/PR").mean())


@pytest.mark.slow
def test_marginalised_fit_recovers_effect_prevalence_and_hidden_levels(recovery, tmp_path):
    from bayes_cart.analysis.summary import population_summary
    from bayes_cart.inference.io import load_fit, save_fit

    result, truth, hidden, fraction = recovery
    post = result.idata.posterior
    b = np.asarray(post["b_beta"].sel(beta_effect="RESPONSE[CR/PR]")).reshape(-1)
    lo, hi = np.quantile(b, [0.05, 0.95])
    assert lo <= RECOVERY_EFFECT <= hi, (lo, hi)
    prev = np.asarray(post["prevalence_RESPONSE"].sel(RESPONSE_level="CR/PR")).reshape(-1)
    plo, phi = np.quantile(prev, [0.05, 0.95])
    assert plo <= fraction <= phi, (plo, phi, fraction)
    prob = post["p_RESPONSE_level"].mean(("chain", "draw"))
    ids = [str(i) for i in prob["patient_missing_RESPONSE"].values]
    assert sorted(ids) == sorted(hidden)
    right = [float(prob.sel(patient_missing_RESPONSE=i, RESPONSE_level=truth[i])) for i in ids]
    assert np.mean(np.asarray(right) > 0.5) >= 0.7, right
    # saved and loaded, the summary lists the prevalence
    loaded = load_fit(save_fit(result, tmp_path / "fit.nc"))
    table = population_summary(loaded.idata).set_index("parameter")
    assert {"prevalence_RESPONSE[CR/PR]", "prevalence_RESPONSE[PD/NR]"} <= set(table.index)
    print(
        f"\nb_beta:RESPONSE[CR/PR] truth {RECOVERY_EFFECT} median {np.median(b):.3f} "
        f"90% [{lo:.3f}, {hi:.3f}]; prevalence CR/PR truth {fraction:.2f} median "
        f"{np.median(prev):.3f} 90% [{plo:.3f}, {phi:.3f}]; P(true level) of the hidden: "
        f"{np.round(right, 2).tolist()}; max R-hat {result.diagnostics.max_rhat:.3f}, "
        f"divergences {result.diagnostics.divergences}"
    )


def test_component_tables_fill_only_the_missing_cells():
    from bayes_cart.model.marginal import component_tables, enumerate_components

    patients = pd.DataFrame({"R": [None, "b", None], "T": ["y", None, None]})
    codes = np.array([[-1, 1], [1, -1], [-1, -1]])
    comps, valid = enumerate_components(codes, [2, 2])
    assert valid.sum(axis=1).tolist() == [2, 2, 4]
    tables = component_tables(
        patients, np.arange(3), ["R", "T"], {"R": ("a", "b"), "T": ("x", "y")}, comps
    )
    assert [t.loc[0, "T"] for t in tables] == ["y"] * 4  # observed: kept
    assert [t.loc[1, "R"] for t in tables] == ["b"] * 4
    assert [(t.loc[2, "R"], t.loc[2, "T"]) for t in tables] == [
        ("a", "x"),
        ("a", "y"),
        ("b", "x"),
        ("b", "y"),
    ]
