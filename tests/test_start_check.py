"""The sampler's start is checked before sampling; terms not finite are named (issue 12)."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from bayes_cart.errors import StartError
from bayes_cart.example import load_example
from bayes_cart.inference.start_check import check_start, start_point
from bayes_cart.model.build import build_model
from bayes_cart.model.spec import load_spec

POISONED = 2  # the patient whose start is made NaN


@pytest.fixture(scope="module")
def tiny():
    ds = load_example()
    return ds.subset(list(ds.patient_ids)[:40:10])  # 4 patients


@pytest.fixture
def model(tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_model(tiny, load_spec("liu2021"))


def _poison(model, var: str = "log_alpha_i", k: int = POISONED) -> str:
    """Put a NaN in patient ``k``'s starting value of ``var``; return that patient's ID."""
    init = dict(model.bayes_cart_initvals)
    values = np.array(init[var], dtype=float)
    values[k] = np.nan
    init[var] = values
    model.bayes_cart_initvals = init
    return model.bayes_cart_data.patient_ids[k]


def _rows(model, patient: str) -> list[int]:
    md = model.bayes_cart_data
    k = md.patient_ids.index(patient)
    return [int(r) for r in md.obs_rows[md.patient_index == k]]


def test_a_normal_start_passes(model):
    check_start(model)  # no error
    point = start_point(model)
    assert [v.name for v in model.value_vars] == list(point)
    assert all(np.all(np.isfinite(v)) for v in point.values())


def test_nan_in_one_patients_start_names_the_variable_patient_and_rows(model):
    patient = _poison(model)
    with pytest.raises(StartError) as info:
        check_start(model)
    message = str(info.value)
    assert "\n" not in message
    assert f"log density of log_alpha_i is nan (patient {patient})" in message
    rows = _rows(model, patient)
    assert f"log density of log_dv is nan (patient {patient}, rows {rows[0]}, " in message
    by_name = {t.variable: t for t in info.value.terms}
    assert set(by_name) == {"log_alpha_i", "log_dv"}
    assert by_name["log_dv"].patients == (patient,)
    assert list(by_name["log_dv"].rows) == rows
    others = [p for p in model.bayes_cart_data.patient_ids if p != patient]
    assert not any(p in message for p in others)


def _fake_compiled(point: dict, order: list[str], grad: np.ndarray, logp: float = -10.0):
    """A stand-in for nutpie's compiled model whose flat vector follows ``order``."""
    shapes = {name: np.shape(point[name]) for name in order}
    shapes["some_deterministic"] = (3,)  # nutpie lists the trace's other variables after
    return SimpleNamespace(n_dim=grad.size, shapes=shapes, logp_func=lambda x: (logp, grad))


@pytest.mark.parametrize("reverse", [False, True])
def test_a_gradient_that_is_not_finite_names_the_variable_and_patient(model, reverse):
    # the flat vector's order is the compiled model's (the JAX backend's differs from PyMC's)
    point = start_point(model)
    order = list(point)[::-1] if reverse else list(point)
    sizes = [int(np.size(point[name])) for name in order]
    offset = sum(sizes[: order.index("z_rM")])
    grad = np.zeros(sum(sizes))
    grad[offset + 1] = np.inf  # second patient's z_rM
    with pytest.raises(StartError, match="gradient of z_rM is inf") as info:
        check_start(model, _fake_compiled(point, order, grad))
    patient = model.bayes_cart_data.patient_ids[1]
    assert str(info.value).startswith(
        f"not finite at the sampler's starting point: gradient of z_rM is inf (patient {patient})"
    )
    assert len(info.value.terms) == 1
    check_start(model, _fake_compiled(point, order, np.zeros(grad.size)))


def test_the_compiled_nutpie_jax_function_checks_the_start(model, monkeypatch):
    import bayes_cart.inference.start_check as start_check
    from bayes_cart.inference.sampling import _compile_nutpie

    compiled = _compile_nutpie(model, "nutpie-jax")
    per_term = start_check._logp_terms
    calls = []
    monkeypatch.setattr(start_check, "_logp_terms", lambda *a: calls.append(a) or per_term(*a))
    check_start(model, compiled)  # the data-informed start is finite
    assert not calls  # one evaluation of nutpie's function, no per-term function compiled
    patient = _poison(model, "z_deltaM", 3)
    with pytest.raises(StartError, match=f"log density of z_deltaM is nan \\(patient {patient}\\)"):
        check_start(model, compiled)


def test_sample_posterior_refuses_the_start_before_sampling(model, monkeypatch):
    import nutpie

    from bayes_cart.inference.sampling import sample_posterior

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled although the start is not finite")

    monkeypatch.setattr(nutpie, "sample", no_sampling)
    patient = _poison(model, "log_Cmax_i", 0)
    with pytest.raises(StartError, match=f"log density of log_Cmax_i is nan \\(patient {patient}"):
        sample_posterior(model, sampler="nutpie-jax", chains=2, tune=10, draws=10)


def test_cli_fit_prints_the_start_error_without_a_traceback(tiny, tmp_path, monkeypatch):
    import pymc as pm
    from typer.testing import CliRunner

    import bayes_cart.inference.sampling as sampling
    from bayes_cart.cli import app

    built = {}

    def poisoned_model(*args, **kwargs):
        model = build_model(*args, **kwargs)
        built["patient"] = _poison(model)
        return model

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled although the start is not finite")

    monkeypatch.setattr(sampling, "build_model", poisoned_model)
    monkeypatch.setattr(pm, "sample", no_sampling)
    data = tmp_path / "data.csv"
    tiny.to_frame().to_csv(data, index=False)
    args = ["fit", str(data), "--out", str(tmp_path / "o"), "--model", "liu2021"]
    result = CliRunner().invoke(app, [*args, "--sampler", "pymc"], env={"COLUMNS": "300"})
    assert result.exit_code == 1, result.output
    out = result.output
    assert "Traceback" not in out and "AssertionError" not in out
    assert "not finite at the sampler's starting point" in out
    assert f"log_alpha_i is nan (patient {built['patient']})" in " ".join(out.split())
    assert not (tmp_path / "o").exists()
