"""Time-varying step covariates (``alpha ~ TOCI``): data rules, the model, recovery."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import CHECKS_OMEGA, CHECKS_TIMES, CHECKS_TYPICAL

from bayes_cart.data.dataset import load_dataset
from bayes_cart.errors import DataError, SpecError
from bayes_cart.kinetics import get_kinetics
from bayes_cart.kinetics.step_change import with_step_change
from bayes_cart.model.build import build_model
from bayes_cart.model.likelihood import CensoringIndex, censored_loglik
from bayes_cart.model.model_data import prepare_model_data
from bayes_cart.model.spec import load_spec
from bayes_cart.model.step_covariates import find_step_covariate, split_step_terms
from bayes_cart.predict import predict_at_observations

TRUE_EFFECT = np.log(2.5)  # tocilizumab multiplies the contraction rate alpha by 2.5
SWITCH_DAYS = (14.0, 21.0, 28.0)  # on sampling days, so the data place the change exactly


def toci_data(n_patients: int = 40, seed: int = 7, lloq: float = 20.0) -> pd.DataFrame:
    """Liu patients of whom half start tocilizumab on day 14, 21 or 28 (TOCI 0 -> 1)."""
    rng = np.random.default_rng(seed)
    step = with_step_change(get_kinetics("liu2021"), ["alpha"])
    times = np.asarray(CHECKS_TIMES, dtype=float)
    rows = []
    for i in range(n_patients):
        p = {
            k: v * np.exp(CHECKS_OMEGA[k] * rng.standard_normal())
            for k, v in CHECKS_TYPICAL.items()
        }
        tc = float(rng.choice(SWITCH_DAYS)) if i % 2 == 0 else np.inf
        p.update(TC=tc, alpha_after=p["alpha"] * np.exp(TRUE_EFFECT))
        log_c = np.asarray(step.solve(times, p, solver="linear")["log_total"])
        dv = np.exp(log_c + 0.3 * rng.standard_normal(times.size))
        cens = (dv < lloq).astype(int)
        for t, y, c in zip(times, np.where(cens == 1, lloq, dv), cens, strict=True):
            rows.append({"ID": f"P{i:03d}", "TIME": t, "DV": y, "CENS": c, "TOCI": int(t >= tc)})
    return pd.DataFrame(rows)


def _load(frame: pd.DataFrame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_dataset(frame, time_varying=["TOCI"])


def _spec(formula: str = "TOCI"):
    return load_spec("liu2021").with_overrides(covariates={"alpha": formula})


def test_a_step_covariate_is_a_plain_term_only() -> None:
    assert split_step_terms({"alpha": "TOCI"}, ("TOCI",)) == ({"alpha": "1"}, {"alpha": "TOCI"})
    with pytest.raises(SpecError, match="other than as a plain term"):
        split_step_terms({"alpha": "RESPONSE:TOCI"}, ("TOCI",))
    with pytest.raises(SpecError, match="one time-varying step covariate per fit"):
        split_step_terms({"alpha": "TOCI", "rM": "STEROID"}, ("TOCI", "STEROID"))


def test_change_times_and_bad_values_name_the_patient() -> None:
    frame = toci_data(6)
    data = _load(frame)
    step = find_step_covariate(data, {"alpha": "TOCI"})
    expected = [frame[(frame.ID == i) & (frame.TOCI == 1)].TIME.min() for i in data.patient_ids]
    np.testing.assert_array_equal(step.change_time, np.nan_to_num(expected, nan=np.inf))
    assert np.isinf(step.change_time[1]) and np.isfinite(step.change_time[0])
    back = frame.copy()
    back.loc[(back.ID == "P000") & (back.TIME == 180.0), "TOCI"] = 0
    with pytest.raises(DataError, match="goes back from 1 to 0") as err:
        find_step_covariate(_load(back), {"alpha": "TOCI"})
    assert "P000" in str(err.value)
    two = frame.copy()
    two.loc[3, "TOCI"] = 2
    with pytest.raises(DataError, match="must be 0 or 1") as err:
        find_step_covariate(_load(two), {"alpha": "TOCI"})
    assert "row 4" in str(err.value) and "TOCI" in str(err.value)


def test_the_model_solves_the_step_and_numpy_predicts_it_exactly() -> None:
    """alpha ~ TOCI: a linear-route model whose likelihood numpy reproduces to 1e-8."""
    data = _load(toci_data(10))
    spec = _spec()
    md = prepare_model_data(data, spec)
    model = build_model(data, spec, model_data=md)
    assert model.bayes_cart_solver == "linear"
    assert model.bayes_cart_kinetics == "liu2021+step(alpha)"
    assert "b_alpha_TOCI" in model.named_vars
    rng = np.random.default_rng(2)
    point = {k: v + rng.normal(0, 0.2, np.shape(v)) for k, v in model.initial_point().items()}
    names = ["C0", "beta", "T1", "alpha", "rM", "deltaM", "alpha_after"]
    outs = model.replace_rvs_by_values([model[f"{n}_i"] for n in names] + [model["sigma"]])
    vals = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")(point)
    params = {n: np.asarray(v)[None, :] for n, v in zip(names, vals[:-1], strict=True)}
    params["TC"] = md.step.change_time[None, :]
    mu = predict_at_observations(
        "liu2021+step(alpha)", params, md.patient_index, md.time, solver="linear"
    )[0]
    index = CensoringIndex.from_arrays(md.cens, md.log_limit)
    lim = np.nan_to_num(md.log_limit, nan=0.0)
    numpy_ll = censored_loglik(md.log_dv, mu, float(vals[-1]), index, lim, xp=np)
    graph = model.compile_fn(
        model.logp(vars=[model["log_dv"]], sum=False),
        inputs=model.value_vars,
        on_unused_input="ignore",
    )(point)[0]
    np.testing.assert_allclose(numpy_ll, graph, rtol=1e-8, atol=1e-8)
    # the switch matters: without it the switching patients' late samples are predicted higher
    no_switch = predict_at_observations(
        "liu2021",
        {k: v for k, v in params.items() if k not in ("TC", "alpha_after")},
        md.patient_index,
        md.time,
    )[0]
    switched = np.isfinite(md.step.change_time[md.patient_index]) & (
        md.time > md.step.change_time[md.patient_index]
    )
    assert np.all(np.abs(no_switch[switched] - mu[switched]) > 1e-6)
    np.testing.assert_allclose(no_switch[~switched], mu[~switched], rtol=1e-9)


@pytest.mark.slow
def test_a_tocilizumab_effect_on_alpha_is_recovered() -> None:
    """Simulate with alpha x 2.5 from the switch, fit alpha ~ TOCI: the 90% interval covers it."""
    from bayes_cart.inference.sampling import fit
    from bayes_cart.predict import individual_predictions

    data = _load(toci_data(40, seed=11))
    result = fit(data, _spec(), chains=2, tune=600, draws=400, random_seed=3, prior_draws=0)
    b = result.idata.posterior["b_alpha_TOCI"].values.ravel()
    lo, hi = np.quantile(b, [0.05, 0.95])
    assert lo < TRUE_EFFECT < hi, (lo, hi)
    assert lo > 0  # the effect is detected (alpha faster under tocilizumab)
    assert result.settings["solver"] == "linear"
    assert result.settings["kinetics"] == "liu2021+step(alpha)"
    ipred = np.median(individual_predictions(result, n_draws=100), axis=0)
    resid = result.model_data.log_dv - ipred
    assert np.median(np.abs(resid[result.model_data.cens == 0])) < 0.4


def test_the_effect_is_summarised_as_parameter_and_column() -> None:
    from bayes_cart.analysis.summary import _label

    assert _label("b_alpha_TOCI", None) == "alpha:TOCI"
    assert _label("b_beta", "RESPONSE[CR/PR]") == "beta:RESPONSE[CR/PR]"
