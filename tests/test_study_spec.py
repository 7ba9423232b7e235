"""Study specs: shipped examples load, every problem is reported at once with its key."""

from __future__ import annotations

import copy

import pytest
from study_doubles import study_dict

import bayes_cart as bc
from bayes_cart.study import list_studies, load_study, study_from_dict


def test_shipped_studies_load_and_defaults_are_merged():
    assert "tiny_two_stage" in list_studies()
    for name in list_studies():
        study = load_study(name)
        assert study.replicates >= 1 and study.quantities
    study = load_study("tiny_two_stage")
    null, effect = study.scenarios["null"], study.scenarios["effect"]
    assert null.population["typical"] == effect.population["typical"]  # from [defaults]
    assert null.population_parameters().effects == {}
    assert effect.population_parameters().effects == {"beta": {"RESPONSE": {"CR/PR": 0.4}}}
    assert effect.design.n_patients == 16 and effect.design.covariate_names == ("TRIAL", "RESPONSE")


def test_every_problem_is_reported_at_once_with_its_key():
    raw = study_dict(
        methods={
            "a": {"kind": "bayes", "blq": "m4", "chainz": 2},
            "b": {"kind": "two_stage", "parameter": "gamma", "covariate": "SEX"},
            "c": {"kind": "baye"},
        }
    )
    raw["study"].pop("replicates")
    with pytest.raises(bc.SpecError) as info:
        study_from_dict(raw, source="bad.toml")
    text = str(info.value)
    assert text.startswith("study spec bad.toml:")
    assert "study.replicates: required" in text
    assert "methods.a.blq: Input should be 'm3', 'drop' or 'lloq_half'" in text
    assert "methods.a.chainz: unknown key; did you mean 'chains'?" in text
    # semantic problems come after the structural ones are fixed
    raw["study"]["replicates"] = 2
    raw["methods"]["a"] = {"kind": "bayes", "covariates": {"beta": "SEX"}, "model": "liu2021"}
    raw["study"]["quantities"] = ["beta", "omega_T1", "beta:RESPONSE[CR/PR]"]
    raw["scenarios"]["effect"]["population"]["typical"] = {"beta": -1.0}
    with pytest.raises(bc.SpecError) as info:
        study_from_dict(raw, source="bad.toml")
    problems = info.value.problems
    joined = "\n".join(problems)
    assert "methods.a.covariates: ['SEX'] not simulated in scenario 'null'" in joined
    assert "methods.b.parameter: 'gamma' is not estimated by 'liu2021'" in joined
    assert "methods.b.covariate: 'SEX' is not a categorical design covariate" in joined
    assert "methods.c.kind: unknown method kind 'baye'; did you mean 'bayes'?" in joined
    assert "scenarios.effect.population.typical.beta: -1.0 must be > 0" in joined
    assert "study.quantities: 'omega_T1' has no true value in scenario(s) ['null']" in joined


def test_formulas_are_checked_not_executed():
    raw = study_dict(methods={"a": {"kind": "bayes", "covariates": {"beta": "__import__('os')"}}})
    with pytest.raises(bc.SpecError, match="methods.a"):
        study_from_dict(raw)


def test_hash_ignores_replicates_only():
    base = study_from_dict(study_dict(replicates=2))
    assert study_from_dict(study_dict(replicates=9)).hash == base.hash
    assert base.with_replicates(5).hash == base.hash and base.with_replicates(5).replicates == 5
    changed = copy.deepcopy(study_dict(replicates=2))
    changed["scenarios"]["effect"]["population"]["effects"]["beta"]["RESPONSE"]["CR/PR"] = 0.5
    assert study_from_dict(changed).hash != base.hash


def test_a_missing_or_malformed_file_is_a_spec_error(tmp_path):
    with pytest.raises(bc.SpecError, match="no shipped study named 'nope'"):
        load_study("nope")
    bad = tmp_path / "s.toml"
    bad.write_text("[study\nname = 1")
    with pytest.raises(bc.SpecError, match="not valid TOML"):
        load_study(bad)
