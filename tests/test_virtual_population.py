"""Virtual populations from a fit: bands collapse without variability, widen with omega."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bayes_cart.analysis.virtual_population import (
    _pair_cells,
    group_levels,
    observed_by_group,
    simulate_virtual_population,
    typical_parameters,
    typical_patients,
)
from bayes_cart.errors import DataError
from bayes_cart.kinetics import get_kinetics

TYPICAL = {"C0": 20.0, "beta": 0.45, "T1": 11.0, "alpha": 0.15, "rM": 0.003, "deltaM": 0.01}
U_TRIAL = np.array([0.1, 0.0, -0.2])
B_CR = 0.3


def _posterior(design, omega_c0: float = 0.0) -> dict:
    def effects(param: str, values: dict[str, float]) -> np.ndarray:
        return np.array([values.get(n, 0.0) for n in design.effect_names(param)])

    post = {
        **TYPICAL,
        "b_beta": effects("beta", {"RESPONSE[CR/PR]": B_CR, "TUMOR_TYPE[solid]": -0.1}),
        "b_alpha": effects("alpha", {}),
        "u_trial_beta": U_TRIAL,
        "omega_trial_beta": 0.1,
        "sigma": 0.3,
    }
    for p in TYPICAL:
        post[f"omega_{p}"] = 0.0
    post["omega_C0"] = omega_c0
    post["corr_beta_T1"] = 0.0
    return post


@pytest.fixture(scope="module")
def design(analysis_data, analysis_spec):
    from bayes_cart.model.model_data import prepare_model_data

    return prepare_model_data(analysis_data[0], analysis_spec).design


@pytest.fixture(scope="module")
def point_fit(analysis_data, analysis_spec, design, fake_fit_factory):
    return fake_fit_factory(analysis_data[0], analysis_spec, _posterior(design), n_draws=50)


def _closed_form(params: dict, times: np.ndarray) -> dict[str, np.ndarray]:
    out = get_kinetics("liu2021").solve(times, params)
    return {
        "total": np.exp(out["log_total"]),
        "effector": np.exp(out["log_E"]),
        "memory": np.exp(out["log_M"]),
    }


def test_bands_collapse_to_the_closed_form_without_variability(point_fit):
    times = np.array([0.0, 5.0, 10.0, 12.0, 30.0, 120.0, 304.0])  # not at T1 itself
    ds = simulate_virtual_population(
        point_fit, "TRIAL", n_patients=200, times=times, covariates="reference", random_seed=1
    )
    assert dict(ds.sizes) == {"group": 3, "time": 7, "quantile": 3}
    assert list(ds["group"].values) == ["A", "B", "C"]
    for g, u in zip(["A", "B", "C"], U_TRIAL, strict=True):
        expected = _closed_form(dict(TYPICAL, beta=TYPICAL["beta"] * np.exp(u)), times)
        for state in ("total", "effector", "memory"):
            got = ds[state].sel(group=g).values  # (time, quantile)
            np.testing.assert_allclose(
                got,
                np.repeat(expected[state][:, None], 3, 1),
                rtol=1e-4,
                atol=1e-300,
                err_msg=f"{g} {state}",
            )
            np.testing.assert_allclose(ds[f"{state}_typical"].sel(group=g).values, got, rtol=1e-4)


def test_observed_covariates_keep_each_patients_own_effects(point_fit, analysis_data):
    data, _ = analysis_data
    times = np.array([10.0])
    ds = simulate_virtual_population(
        point_fit, "RESPONSE", n_patients=400, times=times, random_seed=2, typical=False
    )
    assert "total_typical" not in ds
    # CR/PR patients: beta = typical * exp(0.3 + trial + solid effects); without IIV every
    # virtual patient follows one of the curves of the fitted CR/PR patients' covariates
    pts = data.patients[data.patients["RESPONSE"] == "CR/PR"]
    shifts = B_CR + np.array([U_TRIAL["ABC".index(t)] for t in pts["TRIAL"]])
    shifts = shifts - 0.1 * (pts["TUMOR_TYPE"] == "solid").to_numpy()
    peaks = [
        _closed_form(dict(TYPICAL, beta=TYPICAL["beta"] * np.exp(s)), times)["total"][0]
        for s in shifts
    ]
    med = float(ds["total"].sel(group="CR/PR", quantile=0.5).values[0])
    assert min(peaks) * (1 - 1e-4) <= med <= max(peaks) * (1 + 1e-4)
    assert float(ds["total"].sel(group="CR/PR", quantile=0.1).values[0]) >= min(peaks) * (1 - 1e-4)
    assert float(ds["total"].sel(group="CR/PR", quantile=0.9).values[0]) <= max(peaks) * (1 + 1e-4)
    # non-responders (no response effect) sit below responders of the same trial mix
    assert float(ds["total"].sel(group="PD/NR", quantile=0.5).values[0]) < med


@pytest.mark.parametrize("omega", [0.2, 0.5])
def test_band_width_follows_omega(analysis_data, analysis_spec, design, fake_fit_factory, omega):
    fit = fake_fit_factory(analysis_data[0], analysis_spec, _posterior(design, omega), n_draws=50)
    ds = simulate_virtual_population(
        fit,
        None,
        n_patients=2000,
        times=np.array([30.0]),
        covariates="reference",
        random_seed=3,
        typical=False,
    )
    assert list(ds["group"].values) == ["all"]
    total = ds["total"].sel(group="all").values[0]  # (quantile,) 10%, 50%, 90%
    # only C0 varies, and the level is proportional to C0: log(q90/q10) = 2 z_0.9 omega
    width = np.log(total[2] / total[0])
    assert width == pytest.approx(2 * stats.norm.ppf(0.9) * omega, rel=0.1)
    expected_median = _closed_form(TYPICAL, np.array([30.0]))["total"][0]
    assert total[1] == pytest.approx(expected_median, rel=0.05)


def test_wider_omega_gives_wider_bands(analysis_data, analysis_spec, design, fake_fit_factory):
    widths = []
    for omega in (0.1, 0.3, 0.6):
        fit = fake_fit_factory(analysis_data[0], analysis_spec, _posterior(design, omega), 20)
        ds = simulate_virtual_population(
            fit, "TRIAL", n_patients=500, times=np.array([0.0, 60.0]), random_seed=4, typical=False
        )
        widths.append(float((ds["total"].isel(quantile=-1) / ds["total"].isel(quantile=0)).min()))
    assert widths[0] < widths[1] < widths[2]


def test_each_virtual_patient_gets_its_own_draw_when_possible():
    rng = np.random.default_rng(0)
    s_idx, r_idx = _pair_cells(300, 1000, 5, rng)
    assert len(np.unique(s_idx)) == 300
    s_idx, r_idx = _pair_cells(1000, 300, 4, rng)
    cells = set(zip(s_idx.tolist(), r_idx.tolist(), strict=True))
    assert len(cells) == 1000  # no virtual patient duplicated
    counts = np.bincount(s_idx, minlength=300)
    assert counts.max() - counts.min() <= 1  # draws used evenly


def test_virtual_population_is_reproducible(point_fit):
    a = simulate_virtual_population(point_fit, "TRIAL", n_patients=50, times=[0, 20], random_seed=9)
    b = simulate_virtual_population(point_fit, "TRIAL", n_patients=50, times=[0, 20], random_seed=9)
    assert a.identical(b)
    assert a.attrs["by"] == "TRIAL" and a.attrs["n_patients"] == 50


def test_typical_patients_use_references_and_leave_unused_columns_missing(point_fit):
    groups = group_levels(point_fit, "response")
    assert groups.levels == ["PD/NR", "CR/PR", "unknown"] and groups.reference == "PD/NR"
    table = typical_patients(point_fit, groups)
    assert table["RESPONSE"].tolist() == ["PD/NR", "CR/PR", "unknown"]
    assert set(table["TUMOR_TYPE"]) == {"heme"}
    assert table["TRIAL"].isna().all()  # random trial effect: no trial for a typical patient
    assert table["DOSE"].isna().all()  # not in the model
    params, _ = typical_parameters(point_fit, "RESPONSE")
    np.testing.assert_allclose(params["beta"][0], TYPICAL["beta"] * np.exp([0.0, B_CR, 0.0]))


def test_typical_patient_with_a_level_set_away_from_the_reference(point_fit):
    params, groups = typical_parameters(point_fit, "RESPONSE", at={"TUMOR_TYPE": "solid"})
    np.testing.assert_allclose(
        params["beta"][0], TYPICAL["beta"] * np.exp(np.array([0.0, B_CR, 0.0]) - 0.1)
    )


def test_bad_groups_are_reported(point_fit):
    with pytest.raises(DataError, match="no covariate 'SEX'"):
        simulate_virtual_population(point_fit, "SEX")
    with pytest.raises(DataError, match="continuous"):
        group_levels(point_fit, "DOSE")
    with pytest.raises(DataError, match=r"level\(s\) \['Z'\] not in 'TRIAL'"):
        group_levels(point_fit, "TRIAL", levels=["Z"])
    with pytest.raises(ValueError, match="n_patients"):
        simulate_virtual_population(point_fit, "TRIAL", n_patients=0)


def test_plot_has_one_panel_per_group_with_observations(point_fit):
    from matplotlib.figure import Figure

    from bayes_cart.plots.contrasts import plot_virtual_population

    ds = simulate_virtual_population(point_fit, "TRIAL", n_patients=100, random_seed=5)
    obs = observed_by_group(point_fit, "TRIAL")
    assert set(obs["group"]) == {"A", "B", "C"}
    fig = plot_virtual_population(ds, obs, time_unit="month")
    assert isinstance(fig, Figure)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["A", "B", "C"]
    assert all(ax.get_yscale() == "log" for ax in visible)
    assert len(visible[0].lines) >= 4  # observations, BLQ marks, three medians
