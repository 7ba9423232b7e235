import json

import numpy as np
import pandas as pd
import pytest

from bayes_cart.errors import SpecError
from bayes_cart.spec import (
    evaluate_subset,
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
