"""Several infusions per patient: one cohort of cells per infusion, their levels summed."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import CHECKS_OMEGA, CHECKS_TYPICAL, point_mass_fit

from bayes_cart.data.dataset import load_dataset
from bayes_cart.errors import DataWarning
from bayes_cart.kinetics import get_kinetics
from bayes_cart.kinetics.superposition import (
    Infusions,
    dose_parameter,
    infusion_pairs,
    superposed_solve,
)
from bayes_cart.model.build import build_model
from bayes_cart.model.likelihood import CensoringIndex, censored_loglik
from bayes_cart.model.model_data import infusion_schedule, prepare_model_data
from bayes_cart.model.spec import load_spec
from bayes_cart.predict import predict_at_observations, predict_curves
from bayes_cart.simulate import (
    PopulationParameters,
    add_infusion_rows,
    make_design,
    make_infusions,
    simulate_patients,
)

LIU = get_kinetics("liu2021")
#: A patient of the checks population, re-infused on day 60 with twice the first dose.
PATIENT = {"C0": 30.0, "beta": 0.4, "T1": 12.0, "alpha": 0.12, "rM": 0.002, "deltaM": 0.006}
TIMES = np.array([0.0, 1.0, 7.0, 12.0, 28.0, 59.0, 60.0, 60.5, 63.0, 72.0, 90.0, 180.0])
REINFUSION_DAY = 60.0
SAMPLE_TIMES = (1, 3, 7, 10, 14, 21, 28, 45, 60, 63, 67, 72, 80, 90, 120, 180)


def _load(frame: pd.DataFrame | str, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_dataset(frame, **kwargs)


def two_infusion_data(n_patients: int = 8, seed: int = 4, sigma: float = 0.3):
    """Checks-population patients, every other one re-infused on day 60-90 (dataset format)."""
    pop = PopulationParameters(typical=CHECKS_TYPICAL, omega=CHECKS_OMEGA, sigma=sigma)
    design = make_design(n_patients, SAMPLE_TIMES)
    ids = list(pd.unique(design["ID"]))
    again = ids[1::2]
    days = {pid: 60.0 + 10.0 * (i % 2) for i, pid in enumerate(again)}
    inf = make_infusions(ids, 1e8, reinfused=again, day=days, reinfusion_amount=2e8)
    sim = simulate_patients(design, pop, lloq=20.0, random_seed=seed, infusions=inf)
    return sim, add_infusion_rows(sim.data, inf), inf


# ------------------------------------------------------------------------------------ loader


def test_a_dosing_row_at_day_60_is_a_second_infusion_reported_not_summed(write_csv) -> None:
    text = (
        "ID,TIME,DV,EVID,AMT\n"
        "1,0,.,1,50\n"
        "1,7,100,0,.\n"
        "1,60,8,0,.\n"  # at the re-infusion time: a pre-infusion sample
        "1,60,.,1,25\n"
        "1,67,90,0,.\n"
        "2,0,.,1,40\n"
        "2,7,80,0,.\n"
    )
    with pytest.warns(DataWarning) as record:
        data = load_dataset(write_csv(text))
    shown = [str(w.message) for w in record]
    assert any("1 patient with several infusions" in m and "1 (TIME 0, 60)" in m for m in shown)
    assert not any("summed AMT" in m for m in shown)
    assert data.patients["DOSE"].tolist() == [50.0, 40.0]  # the first infusion's, not 75
    assert data.doses["ROW"].tolist() == [1, 4, 6]
    inf = data.infusions
    assert inf[["ID", "INFUSION", "TIME", "AMT", "ROW"]].values.tolist() == [
        ["1", 1, 0.0, 50.0, 1],
        ["1", 2, 60.0, 25.0, 4],
        ["2", 1, 0.0, 40.0, 6],
    ]
    schedule = infusion_schedule(data)
    assert schedule.start.tolist() == [[0.0, 60.0], [0.0, np.inf]]
    np.testing.assert_allclose(schedule.log_ratio, [[0.0, np.log(0.5)], [0.0, 0.0]])
    assert schedule.count.tolist() == [2, 1]
    md = prepare_model_data(data, load_spec("liu2021"))
    assert md.infusions is not None and md.infusions.n_slots == 2
    assert any("several infusions: 1 patient(s)" in n for n in md.notes)
    # the day-60 sample precedes the re-infusion; the day-67 one has both cohorts
    pairs = infusion_pairs(md.infusions, md.patient_index, md.time)
    per_obs = np.bincount(pairs.obs, minlength=md.n_obs)
    assert md.time.tolist() == [7.0, 60.0, 67.0, 7.0]
    assert per_obs.tolist() == [1, 1, 2, 1]
    assert pairs.since[(pairs.obs == 2) & (pairs.slot == 1)].tolist() == [7.0]
    # every row accounted for, and the stored frame reads back to the same infusions
    again = _load(data.to_frame())
    pd.testing.assert_frame_equal(
        again.infusions[["ID", "TIME", "AMT"]], inf[["ID", "TIME", "AMT"]]
    )


def test_dosing_rows_at_one_time_are_one_infusion_and_late_first_doses_warn(write_csv) -> None:
    text = (
        "ID,TIME,DV,EVID,AMT\n"
        "1,0,.,1,10\n"
        "1,0,.,1,15\n"  # a split bag: one infusion of 25
        "1,2,5,0,.\n"
        "1,30,.,1,50\n"
        "1,35,9,0,.\n"
        "2,1,4,0,.\n"  # a sample before the first dosing row
        "2,3,.,1,20\n"
        "2,8,60,0,.\n"
    )
    with pytest.warns(DataWarning) as record:
        data = load_dataset(write_csv(text))
    shown = [str(w.message) for w in record]
    assert any(
        "several dosing rows at one TIME" in m and "1 (TIME 0: 2 rows, AMT 25)" in m for m in shown
    )
    assert any(
        "first dosing row of 1 patient is not at TIME 0: 2 (TIME 3 days)" in m for m in shown
    )
    assert any(
        "samples before their first dosing row: 2 (1 sample before TIME 3)" in m for m in shown
    )
    assert data.patients["DOSE"].tolist() == [25.0, 20.0]
    schedule = infusion_schedule(data)
    # the first infusion's cohort starts at TIME 0 as for one infusion (the warning says so)
    assert schedule.start.tolist() == [[0.0, 30.0], [0.0, np.inf]]
    np.testing.assert_allclose(schedule.log_ratio[0], [0.0, np.log(2.0)])


def test_a_dose_column_is_compared_with_the_first_infusion(write_csv) -> None:
    text = (
        "ID,TIME,DV,EVID,AMT,DOSE\n"
        "1,0,.,1,50,50\n1,7,100,0,.,50\n1,60,.,1,25,50\n1,67,90,0,.,50\n"
        "2,0,.,1,40,60\n2,7,80,0,.,60\n"
    )
    with pytest.warns(DataWarning) as record:
        data = load_dataset(write_csv(text))
    shown = [str(w.message) for w in record]
    flagged = [m for m in shown if "disagrees with the summed AMT of the first infusion" in m]
    assert len(flagged) == 1 and "2 (DOSE=60, AMT=40)" in flagged[0]
    assert "1 (DOSE" not in flagged[0]
    assert data.patients["DOSE"].tolist() == [50.0, 60.0]


def test_a_per_kg_dose_covariate_is_a_formula_on_the_first_infusion() -> None:
    frame = pd.DataFrame(
        {
            "ID": [1, 1, 1, 1, 2, 2],
            "TIME": [0, 7, 60, 67, 0, 7],
            "DV": [None, 100, None, 90, None, 80],
            "EVID": [1, 0, 1, 0, 1, 0],
            "AMT": [5e8, None, 2.5e8, None, 4e8, None],
            "WT": [50, 50, 50, 50, 80, 80],
        }
    )
    data = _load(frame)
    spec = load_spec("liu2021").with_overrides(covariates={"C0": "log(DOSE / WT)"})
    x = prepare_model_data(data, spec).design.matrices["C0"]
    np.testing.assert_allclose(x.iloc[:, 0], np.log([5e8 / 50, 4e8 / 80]))


def test_single_infusion_data_give_the_single_infusion_model_exactly(write_csv) -> None:
    """One dosing row per patient: no infusion table in the model, the same log density."""
    sim, _, _ = two_infusion_data(6)
    one = make_infusions(list(pd.unique(sim.data["ID"])), 1e8)
    with_rows = _load(add_infusion_rows(sim.data, one))
    without = _load(sim.data)
    spec = load_spec("liu2021")
    md = prepare_model_data(with_rows, spec)
    assert md.infusions is None
    assert infusion_schedule(with_rows).count.tolist() == [1] * 6
    m1 = build_model(with_rows, spec, model_data=md)
    m0 = build_model(without, spec)
    point = m0.initial_point()
    assert m1.compile_logp()(point) == m0.compile_logp()(point)


# ------------------------------------------------------------------------ kinetics and routes


def _one_patient(ratio: float = 2.0) -> Infusions:
    return Infusions(
        start=np.array([[0.0, REINFUSION_DAY]]),
        log_ratio=np.array([[0.0, np.log(ratio)]]),
        count=np.array([2]),
    )


def test_the_closed_form_is_the_sum_of_two_shifted_curves() -> None:
    """Independent of the pairing code: C(t) + 2 C(t - 60) after day 60, C(t) up to it."""
    p = {k: np.array([v]) for k, v in PATIENT.items()}
    out = superposed_solve(LIU, TIMES, np.zeros(TIMES.size, dtype=int), p, _one_patient())
    first = np.exp(LIU.solve(TIMES, PATIENT)["log_total"])
    later = np.where(
        TIMES > REINFUSION_DAY,
        2.0 * np.exp(LIU.solve(np.maximum(TIMES - REINFUSION_DAY, 0.0), PATIENT)["log_total"]),
        0.0,
    )
    np.testing.assert_allclose(out["log_total"], np.log(first + later), rtol=0, atol=1e-12)
    e = np.exp(LIU.solve(TIMES, PATIENT)["log_E"])
    e2 = np.exp(LIU.solve(np.maximum(TIMES - REINFUSION_DAY, 0.0), PATIENT)["log_E"])
    np.testing.assert_allclose(
        out["log_E"], np.log(e + np.where(TIMES > REINFUSION_DAY, 2.0 * e2, 0.0)), atol=1e-12
    )
    # the re-infusion after the contraction re-expands: day 72 far above day 59 and day 60
    total = out["log_total"]
    assert total[TIMES == 72.0][0] > total[TIMES == 59.0][0] + 3.0
    assert total[TIMES == 60.0][0] == pytest.approx(np.log(first[TIMES == 60.0][0]), abs=1e-14)


@pytest.mark.parametrize(("solver", "atol"), [("linear", 1e-8), ("ode", 1e-6)])
def test_the_routes_agree_on_a_two_infusion_patient(solver: str, atol: float) -> None:
    """Closed form vs the matrix exponential (1e-8) and diffrax (its rtol 1e-8: 1e-6)."""
    rng = np.random.default_rng(8)
    n = 3
    params = {k: v * np.exp(0.2 * rng.standard_normal((2, n))) for k, v in PATIENT.items()}
    params["k"] = np.full((2, n), 0.3)
    params["T0"] = np.full((2, n), 2.0)  # a distribution phase in every cohort
    inf = Infusions(
        start=np.array([[0.0, 60.0, 120.0], [0.0, 75.0, np.inf], [0.0, np.inf, np.inf]]),
        log_ratio=np.array([[0.0, np.log(2.0), np.log(0.5)], [0.0, 0.0, 0.0], [0.0] * 3]),
        count=np.array([3, 2, 1]),
    )
    pidx = np.repeat(np.arange(n), TIMES.size)
    t = np.tile(TIMES, n) + np.repeat([0.0, 15.0, 0.0], TIMES.size)
    closed = predict_at_observations("liu2021", params, pidx, t, infusions=inf)
    routed = predict_at_observations("liu2021", params, pidx, t, solver=solver, infusions=inf)
    assert np.isfinite(closed).all()
    np.testing.assert_allclose(routed, closed, rtol=0, atol=atol)
    if solver == "ode":  # (one diffrax compile per state: the grid form with linear only)
        return
    # and the grid form gives the same values
    grid = np.sort(rng.uniform(0.0, 200.0, (n, 7)), axis=1)
    curves = predict_curves("liu2021", params, grid, solver=solver, infusions=inf)
    ref = predict_curves("liu2021", params, grid, infusions=inf)
    np.testing.assert_allclose(curves["log_total"], ref["log_total"], rtol=0, atol=atol)


def test_a_step_change_acts_on_every_cohort_from_the_same_day() -> None:
    """Tocilizumab from day 70: on the second cohort's clock (infused day 60) at day 10."""
    from bayes_cart.model.step_covariates import step_structure

    toci = step_structure("liu2021", ("alpha",))  # registered, as a fit does
    p = dict(PATIENT, TC=70.0, alpha_after=0.4)
    params = {k: np.array([[v]]) for k, v in p.items()}
    t = np.array([30.0, 65.0, 75.0, 100.0])
    out = predict_at_observations(
        toci.name, params, np.zeros(4, dtype=int), t, solver="linear", infusions=_one_patient()
    )[0]
    first = np.exp(toci.solve(t, p, solver="linear")["log_total"])
    shifted = dict(p, TC=70.0 - REINFUSION_DAY)
    later = np.exp(
        toci.solve(np.maximum(t - REINFUSION_DAY, 0.0), shifted, solver="linear")["log_total"]
    )
    expected = np.log(first + np.where(t > REINFUSION_DAY, 2.0 * later, 0.0))
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-10)
    unchanged = predict_at_observations(
        "liu2021",
        {k: v for k, v in params.items() if k in LIU.parameters},
        np.zeros(4, dtype=int),
        t,
        infusions=_one_patient(),
    )[0]
    np.testing.assert_allclose(out[:2], unchanged[:2], rtol=0, atol=1e-10)
    assert np.all(out[2:] < unchanged[2:] - 0.5)  # both cohorts contract faster after day 70


def test_a_structure_without_a_level_parameter_is_refused() -> None:
    assert dose_parameter(LIU) == "C0"
    assert dose_parameter(get_kinetics("stein2019")) == "Cmax"
    with pytest.raises(ValueError, match="need a structure with a level parameter C0 or Cmax"):
        dose_parameter(("a", "b"))


# ------------------------------------------------------------------------------ the PyMC graph


@pytest.fixture(scope="module")
def two_infusion_dataset():
    _, frame, _ = two_infusion_data(8)
    return _load(frame)


def _graph_pieces(dataset, solver: str, seed: int = 3):
    spec = load_spec("liu2021")
    md = prepare_model_data(dataset, spec)
    model = build_model(dataset, spec, model_data=md, solver=solver)
    rng = np.random.default_rng(seed)
    point = {k: v + rng.normal(0.0, 0.2, np.shape(v)) for k, v in model.initial_point().items()}
    names = [n for n in LIU.parameters if f"{n}_i" in model.named_vars]
    outs = model.replace_rvs_by_values([model[f"{n}_i"] for n in names] + [model["sigma"]])
    vals = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")(point)
    params = {n: np.asarray(v)[None, :] for n, v in zip(names, vals[:-1], strict=True)}
    graph = model.compile_fn(
        model.logp(vars=[model["log_dv"]], sum=False),
        inputs=model.value_vars,
        on_unused_input="ignore",
    )(point)[0]
    return md, model, point, params, float(vals[-1]), np.asarray(graph)


@pytest.mark.parametrize("solver", ["closed_form", "linear"])
def test_numpy_predictions_equal_the_graph_for_two_infusions(two_infusion_dataset, solver) -> None:
    """The predict layer gives the graph's pointwise log-likelihood to 1e-8, finite gradient."""
    md, model, point, params, sigma, graph = _graph_pieces(two_infusion_dataset, solver)
    assert md.infusions is not None and (md.infusions.count == 2).sum() == 4
    mu = predict_at_observations(
        "liu2021", params, md.patient_index, md.time, solver=solver, infusions=md.infusions
    )[0]
    index = CensoringIndex.from_arrays(md.cens, md.log_limit)
    numpy_ll = censored_loglik(md.log_dv, mu, sigma, index, np.nan_to_num(md.log_limit), xp=np)
    np.testing.assert_allclose(numpy_ll, graph, rtol=1e-8, atol=1e-8)
    # the second cohort matters: without it the re-infused patients' late samples differ
    single = predict_at_observations("liu2021", params, md.patient_index, md.time, solver=solver)[0]
    after = md.time > md.infusions.start[md.patient_index, 1]
    assert after.sum() >= 12 and np.all(mu[after] - single[after] > 1e-3)
    np.testing.assert_allclose(mu[~after], single[~after], rtol=0, atol=1e-10)
    if solver == "closed_form":  # (the linear route's gradient: test_ode_model's own checks)
        grad = model.compile_dlogp()(point)
        assert np.isfinite(grad).all() and np.abs(grad).max() > 0


def test_the_graph_routes_agree_on_two_infusions(two_infusion_dataset) -> None:
    """The log density of the closed-form and linear-route graphs agree to 1e-8."""
    closed = _graph_pieces(two_infusion_dataset, "closed_form")
    linear = _graph_pieces(two_infusion_dataset, "linear")
    np.testing.assert_allclose(linear[-1], closed[-1], rtol=0, atol=1e-8)


@pytest.mark.slow
def test_the_diffrax_graph_agrees_on_two_infusions(two_infusion_dataset) -> None:
    """The ode-route graph (MCMC tolerances, rtol 1e-6) gives the closed form's density."""
    closed = _graph_pieces(two_infusion_dataset, "closed_form")
    ode = _graph_pieces(two_infusion_dataset, "ode")
    np.testing.assert_allclose(ode[-1], closed[-1], rtol=0, atol=1e-3)


# ---------------------------------------------------------------- simulation and predictions


def test_simulated_reinfusions_reexpand_and_load_back() -> None:
    sim, frame, inf = two_infusion_data(8)
    data = _load(frame)
    assert data.infusions[["ID", "TIME", "AMT"]].values.tolist() == inf.values.tolist()
    states = sim.states
    again = inf.groupby("ID").filter(lambda g: len(g) > 1)
    for pid, rows in again.groupby("ID"):
        day = float(rows["TIME"].iloc[1])
        s = states[states["ID"] == pid].set_index("TIME")["total"]
        before = s[s.index <= day].iloc[-1]
        peak_after = s[(s.index > day) & (s.index <= day + 25)].max()
        assert peak_after > 20 * before, (pid, before, peak_after)
    # patients given one infusion follow the single-infusion curve
    once = set(inf["ID"]) - set(again["ID"])
    plain = simulate_patients(
        make_design(8, SAMPLE_TIMES),
        PopulationParameters(typical=CHECKS_TYPICAL, omega=CHECKS_OMEGA, sigma=0.3),
        lloq=20.0,
        random_seed=4,
    ).states
    mask = states["ID"].isin(once).to_numpy()
    np.testing.assert_allclose(states["total"][mask], plain["total"][mask], rtol=1e-12)


def test_individual_fit_curves_show_the_reinfusion() -> None:
    from bayes_cart.checks.gof import individual_fits

    sim, frame, inf = two_infusion_data(6)
    fit = point_mass_fit(SimpleNamespace(data=frame, population=sim.population, truth=sim.truth))
    assert fit.model_data.infusions is not None
    pid, day = inf.iloc[2]["ID"], float(inf.iloc[2]["TIME"])
    curves = individual_fits(fit, [pid], n_draws=5)
    total = curves[(curves["state"] == "total")].set_index("TIME")["median"]
    assert day in total.index  # the grid has the infusion time and a point just after it
    assert total[total.index > day].iloc[1:30].max() > 10 * total[day]


# ------------------------------------------------------------------------------ recovery (slow)

RECOVERY_SEED_DATA = 12  # fixed before the first run
RECOVERY_SEED_FIT = 5


@pytest.mark.slow
def test_a_reexpansion_after_a_reinfusion_is_recovered() -> None:
    """36 patients, half re-infused on day 60-90 with 1-2x the dose: truth inside the 90%.

    The typical values of every kinetic parameter are covered by their 90% intervals, and
    the posterior curve of each re-infused patient rises again after the second infusion.
    """
    from bayes_cart.inference.sampling import fit
    from bayes_cart.predict import individual_parameters

    n = 36
    pop = PopulationParameters(
        typical=CHECKS_TYPICAL,
        omega=CHECKS_OMEGA,
        correlation={("beta", "T1"): -0.5},
        sigma=0.3,
    )
    design = make_design(n, SAMPLE_TIMES)
    ids = list(pd.unique(design["ID"]))
    again = ids[1::2]
    rng = np.random.default_rng(RECOVERY_SEED_DATA)
    days = {pid: float(rng.choice([60.0, 75.0, 90.0])) for pid in again}
    second = {pid: float(rng.choice([1e8, 2e8])) for pid in again}
    inf = make_infusions(ids, 1e8, reinfused=again, day=days, reinfusion_amount=second)
    sim = simulate_patients(design, pop, lloq=20.0, random_seed=RECOVERY_SEED_DATA, infusions=inf)
    data = _load(add_infusion_rows(sim.data, inf))
    result = fit(
        data,
        load_spec("liu2021"),
        chains=2,
        tune=500,
        draws=300,
        random_seed=RECOVERY_SEED_FIT,
        prior_draws=0,
    )
    post = result.idata.posterior
    missed = {}
    for name, true in CHECKS_TYPICAL.items():
        lo, hi = np.quantile(post[name].values.ravel(), [0.05, 0.95])
        print(f"{name}: truth {true:g}, 90% interval [{lo:.4g}, {hi:.4g}]")  # shown with -s
        if not lo < true < hi:
            missed[name] = (true, round(float(lo), 5), round(float(hi), 5))
    assert not missed, f"90% intervals missing the truth: {missed}"
    # each re-infused patient's posterior curve: a new rise within 20 days of its re-infusion
    params = individual_parameters(result)
    pos = [result.model_data.patient_ids.index(p) for p in again]
    sub = result.model_data.infusions.subset(pos)
    grid = np.array([[days[p] - 0.01, days[p] + 3.0, days[p] + 12.0] for p in again])
    curves = predict_curves(
        "liu2021", {k: v[:, pos] for k, v in params.items()}, grid, infusions=sub
    )["log_total"]
    rise = np.median(curves[:, :, 2] - curves[:, :, 0], axis=0)
    print("log rise 12 days after the re-infusion:", np.round(rise, 2))
    print("diagnostics:", result.diagnostics)
    assert np.all(rise > np.log(10.0)), dict(zip(again, np.round(rise, 2), strict=True))


def test_the_fit_file_predictions_and_replicates_keep_the_infusions(tmp_path) -> None:
    from bayes_cart.inference.io import load_fit, save_fit
    from bayes_cart.predict import individual_predictions, simulate_observed_design

    sim, frame, _ = two_infusion_data(6)
    fit = point_mass_fit(SimpleNamespace(data=frame, population=sim.population, truth=sim.truth))
    loaded = load_fit(save_fit(fit, tmp_path / "fit.nc"))
    md = loaded.model_data
    np.testing.assert_array_equal(md.infusions.start, fit.model_data.infusions.start)
    np.testing.assert_array_equal(md.infusions.log_ratio, fit.model_data.infusions.log_ratio)
    # the posterior is a point mass at the truth: IPRED is the simulator's own curve (the
    # file stores the draws in float32)
    truth = sim.states["log_ipred"].to_numpy()
    ipred = individual_predictions(fit, n_draws=3)
    np.testing.assert_allclose(ipred[0], truth, rtol=0, atol=1e-10)
    ipred = individual_predictions(loaded, n_draws=3)
    np.testing.assert_allclose(ipred[0], truth, rtol=0, atol=1e-5)
    reps = simulate_observed_design(loaded, n_replicates=4, random_seed=1)
    after = md.time > md.infusions.start[md.patient_index, 1]
    assert after.sum() >= 10
    # new patients on the observed design are re-infused on the same days: their late
    # samples re-expand well above the day before the re-infusion
    per = pd.DataFrame({"p": md.patient_index, "t": md.time, "y": reps["log_ipred"].mean(0)})
    for i in np.flatnonzero(md.infusions.count == 2):
        day = md.infusions.start[i, 1]
        rows = per[per["p"] == i]
        before = rows[rows["t"] <= day]["y"].iloc[-1]
        assert rows[(rows["t"] > day) & (rows["t"] <= day + 20)]["y"].max() > before + 2.0


def test_the_plots_mark_the_later_infusions() -> None:
    from bayes_cart.checks.gof import individual_fits
    from bayes_cart.checks.vpc import vpc
    from bayes_cart.plots.checks import plot_individual_fits, plot_vpc

    sim, frame, _ = two_infusion_data(6)
    fit = point_mass_fit(SimpleNamespace(data=frame, population=sim.population, truth=sim.truth))
    infusions = fit.dataset.infusions
    curves = individual_fits(fit, ["P001", "P002"], n_draws=3)
    fig = plot_individual_fits(curves, infusions=infusions)
    labels = [[line.get_label() for line in ax.get_lines()] for ax in fig.axes[:2]]
    assert "re-infusion" not in labels[0] and "re-infusion" in labels[1]  # P002 is re-infused
    result = vpc(fit, n_replicates=20, n_bins=6, random_seed=1)
    fig = plot_vpc(result, infusions=infusions)
    assert any(line.get_label() == "later infusions (3)" for line in fig.axes[0].get_lines())
