import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_cart.errors import SpecError
from bayes_cart.model.expressions import evaluate_subset
from bayes_cart.model.spec import (
    list_specs,
    load_spec,
    parse_covariate_option,
    spec_from_dict,
)


def _raw(name="liu2021"):
    return json.loads(load_spec(name).text)


def test_shipped_specs_are_listed_and_load():
    names = list_specs()
    assert {"liu2021", "liu2021_fixed_t1", "stein2019"} <= set(names)
    for n in names:
        spec = load_spec(n)
        assert spec.name == n
        assert len(spec.hash) == 16


def test_liu2021_declares_the_paper_structure():
    spec = load_spec("liu2021")
    assert spec.kinetics == "liu2021"
    assert spec.parameters["deltaE"].fixed == pytest.approx(0.435 / 30.4375)
    assert spec.estimated_parameters == ("C0", "beta", "T1", "alpha", "rM", "deltaM")
    assert spec.distribution_parameters == ("k", "T0")
    assert ("beta", "T1") in spec.doc.iiv.blocks


def test_fixed_t1_spec_takes_t1_from_data():
    spec = load_spec("liu2021_fixed_t1")
    assert spec.parameters["T1"].from_data == "peak_time"
    assert "T1" not in spec.estimated_parameters


def test_hash_changes_with_content_and_is_stable():
    a, b = load_spec("liu2021"), load_spec("liu2021")
    assert a.hash == b.hash
    c = a.with_overrides(covariates={"beta": "RESPONSE"})
    assert c.hash != a.hash
    assert c.doc.covariates.formulas == {"beta": "RESPONSE"}


def test_every_problem_reported_at_once_with_its_key():
    raw = _raw()
    raw["parameters"]["beta"]["fixed"] = 1.0  # both typical and fixed
    raw["parameters"]["alpha"]["typical"] = {"dist": "Normal", "mu": 0, "sigma": 1}
    raw["parameters"]["bogus"] = {"fixed": 1.0}
    raw["iiv"]["blocks"] = [["beta", "deltaE"]]
    raw["covariates"]["formulas"] = {"beta": "__import__('os').system('x')"}
    raw["error"]["model"] = "combined"
    with pytest.raises(SpecError) as err:
        spec_from_dict(raw, source="bad.toml")
    msg = str(err.value)
    assert "bad.toml" in msg
    for key in (
        "parameters.beta: give exactly one",
        "parameters.alpha.typical",
        "parameters.bogus",
        "iiv.blocks[0]: 'deltaE' has no IIV",
        "covariates.formulas.beta",
        "error.additive",
    ):
        assert key in msg, key
    assert len(err.value.problems) >= 6


def test_pydantic_type_errors_name_the_key():
    raw = _raw()
    raw["parameters"]["beta"]["typical"]["sigma"] = -1
    raw["error"]["model"] = "additive-only"
    with pytest.raises(SpecError) as err:
        spec_from_dict(raw)
    msg = str(err.value)
    assert "parameters.beta.typical.sigma" in msg
    assert "error.model" in msg


def test_unknown_spec_name_and_bad_toml(tmp_path):
    with pytest.raises(SpecError, match="no shipped spec named 'nope'"):
        load_spec("nope")
    p = tmp_path / "x.toml"
    p.write_text("name = [unclosed")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(p)


def test_spec_from_file_roundtrip(tmp_path):
    from importlib import resources

    text = resources.files("bayes_cart.models").joinpath("liu2021.toml").read_text()
    p = tmp_path / "mine.toml"
    p.write_text(text.replace('name = "liu2021"', 'name = "mine"'))
    assert load_spec(p).name == "mine"


def test_parse_covariate_option():
    assert parse_covariate_option(" beta ~ RESPONSE + log(DOSE) ") == (
        "beta",
        "RESPONSE + log(DOSE)",
    )
    with pytest.raises(SpecError):
        parse_covariate_option("beta RESPONSE")


def test_subset_expression_is_evaluated_without_code_execution():
    df = pd.DataFrame({"TRIAL": ["DLBCL", "MM", None], "AGE": [30.0, 70.0, np.nan]})
    assert evaluate_subset("TRIAL == 'DLBCL'", df).tolist() == [True, False, False]
    assert evaluate_subset("trial in ['MM', 'DLBCL'] and AGE > 50", df).tolist() == [
        False,
        True,
        False,
    ]
    for bad in ("__import__('os')", "TRIAL.upper() == 'X'", "[x for x in TRIAL]"):
        with pytest.raises(ValueError):
            evaluate_subset(bad, df)
    with pytest.raises(KeyError, match="no column 'ARM'"):
        evaluate_subset("ARM == 1", df)


# --- impossible priors and values (issue 12, part 4) -----------------------------------------


def _problems_of(raw) -> list[str]:
    with pytest.raises(SpecError) as err:
        spec_from_dict(raw, source="bad.toml")
    return err.value.problems


@pytest.mark.parametrize(
    ("edit", "key", "fragment"),
    [
        (("parameters", "C0", "typical", "median"), "parameters.C0.typical", "positive"),
        (("parameters", "beta", "typical", "sigma"), "parameters.beta.typical.sigma", "greater"),
        (("parameters", "deltaE", "fixed"), "parameters.deltaE.fixed", "must be >= 0"),
        (("iiv", "lkj_eta"), "iiv.lkj_eta", "greater"),
    ],
)
def test_impossible_numbers_name_their_key(edit, key, fragment):
    raw = _raw()
    node = raw
    for k in edit[:-1]:
        node = node[k]
    node[edit[-1]] = -1.0
    (problem,) = _problems_of(raw)
    assert problem.startswith(f"{key}: ") and fragment in problem, problem


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_numbers_are_refused_anywhere(value):
    raw = _raw()
    raw["parameters"]["C0"]["typical"]["median"] = value
    raw["parameters"]["alpha"]["iiv"]["sigma"] = value
    raw["covariates"]["prior"]["mu"] = value
    raw["parameters"]["deltaE"]["fixed"] = value
    problems = _problems_of(raw)
    for key in (
        "parameters.C0.typical.median",
        "parameters.alpha.iiv.sigma",
        "covariates.prior.mu",
        "parameters.deltaE.fixed",
    ):
        assert f"{key}: must be a finite number" in "\n".join(problems), (key, problems)


def test_non_finite_toml_literals_are_refused(tmp_path):
    text = (Path(__file__).parents[1] / "models" / "liu2021.toml").read_text(encoding="utf-8")
    path = tmp_path / "inf.toml"
    path.write_text(text.replace("median = 30.0, sigma = 2.0", "median = 30.0, sigma = inf"))
    with pytest.raises(SpecError, match=r"parameters\.C0\.typical\.sigma: must be a finite"):
        load_spec(path)


@pytest.mark.parametrize(
    ("where", "prior", "fragment"),
    [
        (("parameters", "C0", "iiv"), {"dist": "Normal", "mu": 0.0, "sigma": 1.0}, "IIV SD"),
        (("parameters", "C0", "iiv"), {"dist": "Uniform", "lower": 0.0, "upper": 1.0}, "IIV"),
        (("group", "prior"), {"dist": "Normal", "mu": 0.0, "sigma": 0.3}, "it can be negative"),
        (("error", "sigma"), {"dist": "Uniform", "lower": -1.0, "upper": 1.0}, "lower >= 0"),
        (("error", "sigma"), {"dist": "LogitNormal", "median": 0.5, "sigma": 1}, "(0, inf)"),
    ],
)
def test_priors_that_can_be_negative_are_refused_on_an_sd(where, prior, fragment):
    raw = _raw()
    node = raw
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = prior
    (problem,) = _problems_of(raw)
    assert problem.startswith(".".join(where) + ": ") and fragment in problem, problem


def test_positive_sd_priors_are_accepted():
    raw = _raw()
    raw["error"]["sigma"] = {"dist": "Uniform", "lower": 0.0, "upper": 3.0}
    raw["group"]["prior"] = {"dist": "LogNormal", "median": 0.2, "sigma": 0.5}
    raw["parameters"]["rM"]["iiv"] = {"dist": "Exponential", "lam": 2.0}
    spec = spec_from_dict(raw)
    assert spec.doc.error.sigma.dist == "Uniform"


@pytest.mark.parametrize(
    ("prior", "fragment"),
    [
        ({"dist": "Uniform", "lower": 1.0, "upper": 0.5}, "lower < upper"),
        ({"dist": "Uniform", "lower": 0.5, "upper": 0.5}, "lower < upper"),
        ({"dist": "HalfNormal"}, "HalfNormal needs ['sigma']"),
        ({"dist": "HalfNormal", "sigma": 1.0, "mu": 0.0}, "not ['mu']"),
        ({"dist": "LogNormal", "mu": -1.0, "sigma": 1.0}, "needs ['median']"),
    ],
)
def test_every_prior_is_checked_where_it_stands(prior, fragment):
    raw = _raw()
    raw["error"]["sigma"] = prior
    (problem,) = _problems_of(raw)
    assert problem.startswith("error.sigma: ") and fragment in problem, problem


def test_block_parameters_need_halfnormal_iiv():
    raw = _raw()
    raw["parameters"]["beta"]["iiv"] = {"dist": "Exponential", "lam": 2.0}
    (problem,) = _problems_of(raw)
    assert problem.startswith("parameters.beta.iiv: a parameter in a correlation block")


def test_unknown_keys_suggest_the_key_meant():
    raw = _raw()
    raw["censorin"] = {"method": "M3"}
    raw["parameters"]["beta"]["typical"]["sigmaa"] = 1.0
    raw["sampling"]["centred"] = []
    problems = "\n".join(_problems_of(raw))
    assert "censorin: unknown key; did you mean 'censoring'?" in problems
    assert "parameters.beta.typical.sigmaa: unknown key; did you mean 'sigma'?" in problems
    assert "sampling.centred: unknown key; did you mean 'centered'?" in problems
    assert "allowed here: parameterisation, centered" in problems


def test_form_problems_are_all_listed_at_once():
    raw = _raw()
    raw["parameters"]["C0"]["typical"]["median"] = -30.0
    raw["parameters"]["beta"]["iiv"] = {"dist": "Normal", "mu": 0.0, "sigma": 1.0}
    raw["parameters"]["deltaE"]["fixed"] = -0.1
    raw["group"]["prior"] = {"dist": "Normal", "mu": 0.0, "sigma": 0.3}
    raw["error"]["sigma"] = {"dist": "Uniform", "lower": 2.0, "upper": 1.0}
    raw["parameters"]["alpha"]["typical"]["sigma"] = float("inf")
    raw["typo"] = 1
    problems = _problems_of(raw)
    keys = sorted(p.split(": ", 1)[0] for p in problems)
    assert keys == sorted(
        [
            "parameters.C0.typical",
            "parameters.beta.iiv",
            "parameters.deltaE.fixed",
            "group.prior",
            "error.sigma",
            "parameters.alpha.typical.sigma",
            "typo",
        ]
    ), problems
    assert all("Value error" not in p for p in problems)


def test_replace_edits_a_spec_without_a_json_round_trip():
    base = load_spec("liu2021")
    raw = _raw()
    alpha = {**raw["parameters"]["alpha"], "description": "edited"}
    raw["parameters"]["alpha"] = alpha
    raw["sampling"] = {**raw["sampling"], "parameterisation": "c0"}
    by_hand = spec_from_dict(raw)
    edited = base.replace(parameters={"alpha": alpha}, sampling={"parameterisation": "c0"})
    assert edited.text == by_hand.text and edited.hash == by_hand.hash
    assert set(edited.parameters) == set(base.parameters)  # merged: the others kept
    assert edited.parameters["alpha"].description == "edited"
    assert base.replace().hash == base.hash  # no change, and the base itself is unchanged
    assert base.parameters["alpha"].description != "edited"
    assert base.replace(name="other").name == "other"
    assert base.replace(source="mine").source == "mine"
    assert base.replace(group=None).hash == base.hash  # None leaves a table as it is


def test_replace_is_validated_again():
    with pytest.raises(SpecError, match="sampling.not_a_key"):
        load_spec("liu2021").replace(sampling={"not_a_key": 1})


def test_with_overrides_goes_through_replace():
    spec = load_spec("liu2021").with_overrides(
        covariates={"beta": "RESPONSE"}, reference={"RESPONSE": "PD/NR"}
    )
    again = spec.with_overrides(covariates={"alpha": "RESPONSE"})
    assert again.doc.covariates.formulas == {"beta": "RESPONSE", "alpha": "RESPONSE"}
    assert again.doc.covariates.reference == {"RESPONSE": "PD/NR"}
    assert again.source.endswith("(with overrides)")


def test_a_lognormal_iiv_prior_is_zero_avoiding_in_the_model():
    """``iiv = {dist = "LogNormal"}`` is accepted, enters the model as a log-normal omega (its
    density is scipy's), and the starting estimates read its median as the IIV's scale."""
    import pymc as pm
    from scipy import stats

    from bayes_cart.example import load_example
    from bayes_cart.model import build_model
    from bayes_cart.model.initial_values import starting_point
    from bayes_cart.model.spec import PriorSpec, iiv_prior_scale

    raw = _raw("stein2019")
    raw["parameters"]["beta"]["iiv"] = {"dist": "LogNormal", "median": 0.7, "sigma": 0.6}
    spec = spec_from_dict(raw)
    assert spec.doc.parameters["beta"].iiv == PriorSpec(dist="LogNormal", median=0.7, sigma=0.6)
    assert iiv_prior_scale(spec.doc.parameters["beta"].iiv) == 0.7
    data = load_example()
    data = data.subset(data.patient_ids[:6])
    model = build_model(data, spec)
    omega = model["omega_beta"]
    for value in (0.05, 0.7, 2.0):
        logp = pm.logp(omega, value).eval()
        assert logp == pytest.approx(stats.lognorm(s=0.6, scale=0.7).logpdf(value), rel=1e-9)
    # zero-avoiding: the density vanishes at 0, where a half-normal's is largest
    assert pm.logp(omega, 1e-4).eval() < pm.logp(omega, 0.7).eval() - 50
    from bayes_cart.model.model_data import prepare_model_data

    start = starting_point(spec, prepare_model_data(data, spec))
    assert 0.1 <= start["omegas"]["beta"] <= 1.5
