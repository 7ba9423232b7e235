import json

import numpy as np
import pymc as pm
import pytest

from bayes_cart.errors import SpecError
from bayes_cart.example import load_example
from bayes_cart.kinetics import get_kinetics
from bayes_cart.model.build import build_model
from bayes_cart.model.likelihood import CensoringIndex, censored_loglik
from bayes_cart.model.model_data import prepare_model_data
from bayes_cart.model.sigma_scaling import ELASTICITY_SHRINK
from bayes_cart.model.spec import list_specs, load_spec, spec_from_dict

#: Compile mode of the functions that compare values (densities, deterministics) between
#: models: no C compilation and few rewrites, the values are the graph's as written. The
#: finite-gradient checks use the default mode, as the samplers' backends rewrite the graph.
FAST = "FAST_COMPILE"


@pytest.fixture(scope="module")
def small():
    ds = load_example()
    ids = [i for i in ds.patient_ids if i.startswith(("DLBCL", "MM", "ALLP", "GBM"))][::4]
    return ds.subset(ids)


class _Models:
    """Models of ``small`` built once per spec, with their initial points and compiled log
    densities, for the tests of this module (building and compiling is most of its cost;
    several tests use the same spec). Initial points are handed out as copies."""

    def __init__(self, dataset):
        self.dataset = dataset
        self._models: dict[str, pm.Model] = {}
        self._compiled: dict[tuple[str, int], object] = {}

    def build(self, spec) -> pm.Model:
        if spec.text not in self._models:
            self._models[spec.text] = build_model(self.dataset, spec)
        return self._models[spec.text]

    def _once(self, kind, model, make):
        key = (kind, id(model))
        if key not in self._compiled:
            self._compiled[key] = (model, make())  # the model is kept alive with its id
        return self._compiled[key][1]

    def ip(self, model) -> dict:
        point = self._once("ip", model, model.initial_point)
        return {k: np.copy(v) for k, v in point.items()}

    def logp(self, model):
        """The joint log density (Jacobians included), compiled in FAST_COMPILE mode like
        the equality tests of test_marginalize.py: each term summed in the graph and the
        terms added here (FAST_COMPILE's Python backend cannot add 30 terms in one node)."""

        def make():
            terms = model.logp(sum=False)
            fn = model.compile_fn(
                [t.sum() for t in terms],
                inputs=model.value_vars,
                on_unused_input="ignore",
                mode=FAST,
            )
            return lambda point: float(sum(np.sum(t) for t in fn(point)))

        return self._once("logp", model, make)

    def dlogp(self, model):
        return self._once("dlogp", model, model.compile_dlogp)


@pytest.fixture(scope="module")
def models(small):
    return _Models(small)


def _with(spec, **changes):
    return spec.replace(**changes)


def _values(model, names, point):
    """Values of model variables (deterministics too) at a point of the value variables."""
    fn = model.compile_fn(
        model.replace_rvs_by_values([model[n] for n in names]),
        inputs=model.value_vars,
        on_unused_input="ignore",
        point_fn=True,
        mode=FAST,
    )
    return dict(zip(names, fn(point), strict=True))


def _likelihood_graph_and_numpy(model, kinetics, values, point):
    """The graph's log_dv term and the numpy closed form + M3 likelihood at the same point."""
    md = model.bayes_cart_data
    idx = md.patient_index
    params = {n[:-2]: values[n][idx] for n in values if n.endswith("_i")}
    mu = get_kinetics(kinetics).solve(md.time, params)["log_total"]
    index = CensoringIndex.from_arrays(md.cens, md.log_limit)
    ll = censored_loglik(md.log_dv, mu, values["sigma"], index, md.log_limit)
    graph = model.compile_fn(
        model.logp(vars=[model["log_dv"]], sum=True),
        inputs=model.value_vars,
        on_unused_input="ignore",
        point_fn=True,
        mode=FAST,
    )(point)
    return graph, ll.sum()


@pytest.mark.parametrize("name", list_specs())
def test_every_shipped_spec_builds_with_finite_logp_and_gradient(small, models, name):
    model = models.build(load_spec(name))
    ip = models.ip(model)
    assert np.isfinite(models.logp(model)(ip))
    grads = models.dlogp(model)(ip)
    assert grads.size == sum(np.size(v) for v in ip.values())  # one entry per free value
    assert np.all(np.isfinite(grads))


def test_dims_and_coords_read_naturally(small, models):
    spec = load_spec("liu2021").with_overrides(
        covariates={"beta": "RESPONSE + TUMOR_TYPE"},
        reference={"RESPONSE": "PD/NR", "TUMOR_TYPE": "heme"},
        group={"column": "TRIAL", "mode": "random", "parameters": ["beta"]},
    )
    model = models.build(spec)
    assert model.coords["patient"] == tuple(small.patient_ids)
    assert len(model.coords["obs"]) == small.n_observations
    assert set(model.coords["trial"]) == set(small.patients["TRIAL"])
    # pediatric ALL has no response data: an explicit 'unknown' level, nobody dropped
    assert model.coords["beta_effect"] == (
        "RESPONSE[CR/PR]",
        "RESPONSE[unknown]",
        "TUMOR_TYPE[lymphoma]",
        "TUMOR_TYPE[solid]",
    )
    assert model.named_vars_to_dims["beta_i"] == ("patient",)
    assert model.named_vars_to_dims["b_beta"] == ("beta_effect",)
    md = model.bayes_cart_data
    assert md.n_patients == small.n_patients
    assert any("RESPONSE" in note and "unknown" in note for note in md.notes)


def test_distribution_phase_only_for_selected_patients(small, models):
    spec = _with(load_spec("liu2021"), distribution_phase={"enabled_if": "TRIAL == 'DLBCL'"})
    model = models.build(spec)
    dlbcl = [i for i in small.patient_ids if small.patients.loc[i, "TRIAL"] == "DLBCL"]
    assert list(model.coords["patient_dp"]) == dlbcl
    fn = model.compile_fn(
        model.replace_rvs_by_values([model["k_i"], model["T0_i"]]),
        inputs=model.value_vars,
        on_unused_input="ignore",
        point_fn=True,
        mode=FAST,
    )
    k_i, t0_i = fn(models.ip(model))
    is_dp = np.isin(small.patient_ids, dlbcl)
    assert np.all(k_i[is_dp] > 0) and np.all(k_i[~is_dp] == 0) and np.all(t0_i[~is_dp] == 0)


@pytest.mark.parametrize("parameterisation", ["c0", "cmax"])
def test_model_likelihood_equals_numpy_closed_form(small, models, parameterisation):
    """The graph's log_dv term equals the numpy closed form + M3 likelihood at a random point."""
    spec = _with(
        load_spec("liu2021"),
        distribution_phase={"enabled_if": "TRIAL == 'DLBCL'"},
        sampling={"parameterisation": parameterisation},
    )
    model = models.build(spec)
    rng = np.random.default_rng(5)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in models.ip(model).items()}
    names = ["C0_i", "beta_i", "T1_i", "alpha_i", "rM_i", "deltaM_i", "k_i", "T0_i", "sigma"]
    values = _values(model, names, point)
    graph, ll = _likelihood_graph_and_numpy(model, "liu2021", values, point)
    assert np.isclose(graph, ll, rtol=1e-9)
    if parameterisation == "cmax":
        assert "log_Cmax_i" in model.named_vars and "log_C0_i" not in model.named_vars


def test_fixed_t1_spec_uses_observed_peak(small, models):
    spec = load_spec("liu2021_fixed_t1")
    md = prepare_model_data(small, spec)
    obs = small.observations
    pid = small.patient_ids[0]
    quant = obs[(obs["ID"] == pid) & (obs["CENS"] == 0)]
    assert md.from_data["T1"][0] == quant.loc[quant["DV"].idxmax(), "TIME"]
    model = models.build(spec)
    assert "T1" not in model.named_vars and "log_T1" not in model.named_vars


def test_drop_censoring_removes_blq_rows_and_says_so(small):
    spec = _with(load_spec("liu2021"), censoring={"method": "drop"})
    md = prepare_model_data(small, spec)
    assert md.n_censored == 0
    assert md.n_obs == int((small.observations["CENS"] == 0).sum())
    assert any("drop" in n for n in md.notes)


def test_prior_predictive_is_plausible(small, models):
    """Priors are weakly informative in the paper's ranges: check implied kinetics."""
    model = models.build(load_spec("liu2021"))
    with model:
        prior = pm.sample_prior_predictive(draws=400, random_seed=1).prior
    beta = prior["beta"].values.ravel()
    t1 = prior["T1"].values.ravel()
    doubling = np.log(2) / beta
    assert 0.3 < np.median(doubling) < 6  # days
    assert 5 < np.median(t1) < 30
    c0 = prior["C0"].values.ravel()
    log_cmax = np.log(c0) + beta * t1
    assert 1e2 < np.exp(np.median(log_cmax)) < 1e6


def test_trial_as_fixed_effect_adds_treatment_columns(small, models):
    spec = load_spec("liu2021").with_overrides(
        group={"column": "TRIAL", "mode": "fixed", "parameters": ["beta"]},
        reference={"TRIAL": "MM"},
    )
    model = models.build(spec)
    cols = model.coords["beta_effect"]
    assert set(cols) == {f"TRIAL[{t}]" for t in set(small.patients["TRIAL"]) - {"MM"}}
    assert "trial" not in model.coords  # no random trial level


def test_covariate_formula_with_transform_and_missing_numeric(small):
    pts = small.patients.copy()
    spec = load_spec("liu2021").with_overrides(covariates={"beta": "log(DOSE) + AGE"})
    md = prepare_model_data(small, spec)
    X = md.design.matrices["beta"]
    assert list(X.columns) == ["log(DOSE)", "AGE"]
    np.testing.assert_allclose(X["log(DOSE)"], np.log(pts["DOSE"].astype(float)))


def test_unknown_reference_level_is_a_spec_error(small):
    from bayes_cart.errors import SpecError

    spec = load_spec("liu2021").with_overrides(
        covariates={"beta": "RESPONSE"}, reference={"RESPONSE": "responder"}
    )
    with pytest.raises(SpecError, match="level 'responder' of 'RESPONSE' not in the data"):
        prepare_model_data(small, spec)


@pytest.mark.parametrize(
    "error",
    [
        {"model": "combined", "additive": {"dist": "HalfNormal", "sigma": 5.0}},
        {"model": "student_t", "nu": {"dist": "Exponential", "lam": 0.1}},
    ],
)
def test_alternative_residual_models_build_with_finite_gradient(small, models, error):
    raw = json.loads(load_spec("liu2021").text)
    raw["error"] = {**raw["error"], **error}
    model = models.build(spec_from_dict(raw))
    ip = models.ip(model)
    assert np.isfinite(models.logp(model)(ip))
    grads = models.dlogp(model)(ip)
    assert grads.size == sum(np.size(v) for v in ip.values())  # one entry per free value
    assert np.all(np.isfinite(grads))
    extra = "sigma_add" if error["model"] == "combined" else "nu"
    assert extra in model.named_vars


def test_student_t_censored_term_is_a_cdf(small, models):
    """With nu huge the Student-t likelihood equals the normal one (censored rows included)."""
    raw = json.loads(load_spec("liu2021").text)
    raw["error"] = {**raw["error"], "model": "student_t", "nu": {"dist": "Exponential", "lam": 0.1}}
    m_t = models.build(spec_from_dict(raw))
    m_n = models.build(load_spec("liu2021"))
    pt_n = models.ip(m_n)
    pt_t = {**pt_n, "nu_log__": np.log(1e7)}
    lt = m_t.compile_fn(
        m_t.logp(vars=[m_t["log_dv"]]),
        inputs=m_t.value_vars,
        on_unused_input="ignore",
        point_fn=True,
        mode=FAST,
    )(pt_t)
    ln = m_n.compile_fn(
        m_n.logp(vars=[m_n["log_dv"]]),
        inputs=m_n.value_vars,
        on_unused_input="ignore",
        point_fn=True,
        mode=FAST,
    )(pt_n)
    assert np.isclose(lt, ln, rtol=1e-5)


def test_cmax_parameterisation_is_the_same_model(small, models):
    """Sampling log Cmax_i instead of log C0_i is a change of coordinates with Jacobian 1:
    at corresponding points the two joint log densities are equal."""
    common = {"centered": ["C0", "beta", "T1"]}
    dist = {"enabled_if": "TRIAL == 'DLBCL'"}
    m0 = models.build(
        _with(
            load_spec("liu2021"),
            distribution_phase=dist,
            sampling={**common, "parameterisation": "c0"},
        ),
    )
    m1 = models.build(
        _with(
            load_spec("liu2021"),
            distribution_phase=dist,
            sampling={**common, "parameterisation": "cmax"},
        ),
    )
    rng = np.random.default_rng(11)
    p0 = {k: v + rng.normal(0, 0.2, np.shape(v)) for k, v in models.ip(m0).items()}
    names = ["C0_i", "beta_i", "T1_i", "k_i", "T0_i"]
    fn = m0.compile_fn(
        m0.replace_rvs_by_values([m0[n] for n in names]),
        inputs=m0.value_vars,
        on_unused_input="ignore",
        point_fn=True,
        mode=FAST,
    )
    v = dict(zip(names, fn(p0), strict=True))
    p1 = {k: val for k, val in p0.items() if k != "log_C0_i"}
    p1["log_Cmax_i"] = (
        np.log(v["C0_i"]) + v["beta_i"] * (v["T1_i"] - v["T0_i"]) - v["k_i"] * v["T0_i"]
    )
    assert set(p1) == set(models.ip(m1))
    np.testing.assert_allclose(models.logp(m1)(p1), models.logp(m0)(p0), rtol=1e-10)


def test_three_parameter_block_stores_pairwise_correlations(small, models):
    raw = json.loads(load_spec("liu2021").text)
    raw["iiv"]["blocks"] = [["C0", "beta", "T1"]]
    raw["sampling"] = {"parameterisation": "c0"}  # C0 in a block: sampled as C0
    model = models.build(spec_from_dict(raw))
    corr = model["corr_C0_beta_T1"]
    assert corr.type.shape == (3,)  # (C0, beta), (C0, T1), (beta, T1)
    assert np.all(np.isfinite(models.dlogp(model)(models.ip(model))))


def test_centred_covariates_are_the_same_model(small, models):
    """Sampling the average patient's log typical value (centred design) instead of the
    reference level's is a shear with Jacobian 1: at corresponding points the joint log
    densities are equal, and the typical value keeps its spec prior."""
    raw = json.loads(load_spec("liu2021_meta").text)
    raw["sampling"]["center_covariates"] = False
    m0 = models.build(spec_from_dict(raw))
    raw["sampling"]["center_covariates"] = True
    m1 = models.build(spec_from_dict(raw))
    rng = np.random.default_rng(5)
    p0 = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in models.ip(m0).items()}
    md = m1.bayes_cart_data
    p1 = {}
    for k, v in p0.items():
        label = k[len("log_") :] if k.startswith("log_") else None
        X = md.design.matrices.get(label) if label else None
        if X is not None and X.shape[1] > 0:
            # log p_avg = log p_ref + mean(X) b
            p1[f"log_{label}_avg"] = v + X.to_numpy(float).mean(axis=0) @ p0[f"b_{label}"]
        else:
            p1[k] = v
    assert set(p1) == set(models.ip(m1))
    assert any(k.endswith("_avg") for k in p1)
    np.testing.assert_allclose(models.logp(m1)(p1), models.logp(m0)(p0), rtol=1e-10)
    # the reference typical value reported is the same deterministic function in both
    f0, f1 = (
        m.compile_fn(
            m.replace_rvs_by_values([m["alpha"]]),
            inputs=m.value_vars,
            point_fn=True,
            mode=FAST,
            on_unused_input="ignore",
        )
        for m in (m0, m1)
    )
    np.testing.assert_allclose(f1(p1), f0(p0), rtol=1e-12)


def test_centred_covariates_keep_the_typical_value_prior(small, models):
    """Prior draws of the reference-level typical value follow the spec's LogNormal."""
    raw = json.loads(load_spec("liu2021_meta").text)
    raw["sampling"]["center_covariates"] = True
    model = models.build(spec_from_dict(raw))
    assert "log_alpha_avg" in model.named_vars  # the centred coordinates are in use
    prior = load_spec("liu2021_meta").doc.parameters["alpha"].typical
    draws = pm.draw(model["log_alpha"], draws=4000, random_seed=3)
    assert abs(np.mean(draws) - np.log(prior.median)) < 4 * prior.sigma / np.sqrt(4000)
    assert abs(np.std(draws) / prior.sigma - 1) < 0.05


def test_centred_group_effects_are_the_same_model(small, models):
    """Centred trial effects (u ~ Normal(0, omega)) equal the non-centred ones (u = omega z)
    up to the Jacobian of u = omega z, which is omega per trial."""
    raw = json.loads(load_spec("liu2021_meta").text)
    m0 = models.build(spec_from_dict(raw))
    raw["sampling"]["centered_group"] = True
    m1 = models.build(spec_from_dict(raw))
    rng = np.random.default_rng(8)
    p0 = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in models.ip(m0).items()}
    p1 = {k: v for k, v in p0.items() if not k.startswith("z_trial_")}
    log_jac = 0.0
    for label in ("beta", "alpha"):
        omega = np.exp(p0[f"omega_trial_{label}_log__"])
        p1[f"u_trial_{label}"] = omega * p0[f"z_trial_{label}"]
        log_jac += p0[f"z_trial_{label}"].size * np.log(omega)
    assert set(p1) == set(models.ip(m1))
    np.testing.assert_allclose(models.logp(m1)(p1) + log_jac, models.logp(m0)(p0), rtol=1e-10)


@pytest.mark.parametrize("blocks", [[["beta", "T1"]], []])
def test_fold_parameterisation_is_the_same_model(small, models, blocks):
    """Sampling (log beta_i + log T1_i, log T1_i) instead of (log beta_i, log T1_i) is a linear
    map with determinant 1: at corresponding points the joint log densities are equal, with
    beta and T1 in a correlated block and independent."""
    common = {"centered": ["C0", "beta", "T1"]}
    dist = {"enabled_if": "TRIAL == 'DLBCL'"}
    m0 = models.build(
        _with(
            load_spec("liu2021"),
            distribution_phase=dist,
            iiv={"blocks": blocks},
            sampling={**common, "parameterisation": "cmax"},
        ),
    )
    m1 = models.build(
        _with(
            load_spec("liu2021"),
            distribution_phase=dist,
            iiv={"blocks": blocks},
            sampling={**common, "parameterisation": "fold"},
        ),
    )
    rng = np.random.default_rng(3)
    p0 = {k: v + rng.normal(0, 0.2, np.shape(v)) for k, v in models.ip(m0).items()}
    if blocks:
        lb, lt = p0["log_beta_T1_i"][:, 0], p0["log_beta_T1_i"][:, 1]
        p1 = {k: v for k, v in p0.items() if k != "log_beta_T1_i"}
    else:
        lb, lt = p0["log_beta_i"], p0["log_T1_i"]
        p1 = {k: v for k, v in p0.items() if k not in ("log_beta_i", "log_T1_i")}
    p1["log_beta_T1_fold_i"] = np.stack([lb + lt, lt], axis=1)
    assert set(p1) == set(models.ip(m1))
    np.testing.assert_allclose(models.logp(m1)(p1), models.logp(m0)(p0), rtol=1e-10)
    # and the individual values are the same
    f0 = m0.compile_fn(
        m0.replace_rvs_by_values([m0["beta_i"], m0["T1_i"], m0["C0_i"]]),
        inputs=m0.value_vars,
        on_unused_input="ignore",
        point_fn=True,
        mode=FAST,
    )
    f1 = m1.compile_fn(
        m1.replace_rvs_by_values([m1["beta_i"], m1["T1_i"], m1["C0_i"]]),
        inputs=m1.value_vars,
        on_unused_input="ignore",
        point_fn=True,
        mode=FAST,
    )
    for a, b in zip(f0(p0), f1(p1), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10)


def test_fold_parameterisation_needs_centred_beta_and_t1():
    raw = json.loads(load_spec("liu2021").text)
    raw["sampling"] = {"parameterisation": "fold", "centered": ["C0"]}
    with pytest.raises(SpecError, match="'fold' needs beta in sampling.centered"):
        spec_from_dict(raw)


@pytest.mark.parametrize("spec_name, param", [("liu2021", "alpha"), ("stein2019", "alpha")])
def test_centred_and_non_centred_random_effects_are_the_same_model(small, models, spec_name, param):
    """Centring one parameter's random effect changes coordinates only: with
    log p_i = mu_i + omega z_i, the non-centred joint density equals the centred one plus the
    Jacobian n log(omega) at corresponding points."""
    raw = json.loads(load_spec(spec_name).text)
    raw["sampling"]["centering"] = "all"  # stein2019 ships "partial"
    centred = list(raw["sampling"]["centered"])
    assert param in centred  # the shipped list
    mc = models.build(spec_from_dict(raw))
    raw["sampling"]["centered"] = [c for c in centred if c != param]
    mn = models.build(spec_from_dict(raw))
    rng = np.random.default_rng(4)
    pn = {k: v + rng.normal(0, 0.1, np.shape(v)) for k, v in models.ip(mn).items()}
    fn = mn.compile_fn(
        mn.replace_rvs_by_values([mn[f"{param}_i"], mn[f"omega_{param}"]]),
        inputs=mn.value_vars,
        on_unused_input="ignore",
        point_fn=True,
        mode=FAST,
    )
    values, omega = fn(pn)
    pc = {k: v for k, v in pn.items() if k != f"z_{param}"}
    pc[f"log_{param}_i"] = np.log(values)
    assert set(pc) == set(models.ip(mc))
    n = len(values)
    np.testing.assert_allclose(
        models.logp(mn)(pn), models.logp(mc)(pc) + n * np.log(omega), rtol=1e-10
    )


def test_centring_some_patients_only_is_the_same_model(small, models, monkeypatch):
    """With alpha and the (beta, T1) block centred for half of the patients and non-centred
    for the others, the joint density equals the fully centred one plus the Jacobian of the
    non-centred patients (n log omega_alpha + sum log diag L per patient) at corresponding
    points."""
    import bayes_cart.model.build as model_mod

    n = small.n_patients
    half = np.arange(n) % 2 == 0
    raw = json.loads(load_spec("liu2021").text)
    mc = models.build(spec_from_dict(raw))
    raw["sampling"]["centering"] = "informed"
    monkeypatch.setattr(
        model_mod, "_centring_masks", lambda spec, md: {"alpha": half, "beta": half, "T1": half}
    )
    mm = build_model(small, spec_from_dict(raw))  # not cached: built under the monkeypatch
    assert int(mm["log_alpha_i"].shape.eval()[0]) == half.sum()
    assert {"z_alpha", "z_beta_T1", "log_alpha_i", "log_beta_T1_i"} <= set(
        mm.bayes_cart_patient_subsets
    )
    rng = np.random.default_rng(8)
    pc = {k: v + rng.normal(0, 0.1, np.shape(v)) for k, v in models.ip(mc).items()}
    names = [
        "eta_alpha",
        "omega_alpha",
        "eta_beta",
        "eta_T1",
        "omega_beta",
        "omega_T1",
        "corr_beta_T1",
    ]
    fn = mc.compile_fn(
        mc.replace_rvs_by_values([mc[v] for v in names]),
        inputs=mc.value_vars,
        on_unused_input="ignore",
        point_fn=True,
        mode=FAST,
    )
    v = dict(zip(names, fn(pc), strict=True))
    ob, ot, r = v["omega_beta"], v["omega_T1"], v["corr_beta_T1"]
    chol = np.linalg.cholesky(np.array([[ob**2, r * ob * ot], [r * ob * ot, ot**2]]))
    eta_block = np.stack([v["eta_beta"], v["eta_T1"]], axis=1)
    pm_ = {k: val for k, val in pc.items()}
    pm_["log_alpha_i"] = pc["log_alpha_i"][half]
    pm_["z_alpha"] = v["eta_alpha"][~half] / v["omega_alpha"]
    pm_["log_beta_T1_i"] = pc["log_beta_T1_i"][half]
    pm_["z_beta_T1"] = np.linalg.solve(chol, eta_block[~half].T).T
    assert set(pm_) == set(models.ip(mm))
    jac = (~half).sum() * (np.log(v["omega_alpha"]) + np.log(np.diag(chol)).sum())
    np.testing.assert_allclose(models.logp(mm)(pm_), models.logp(mc)(pc) + jac, rtol=1e-10)


def test_logit_normal_fraction_is_exact_and_stays_below_one(small, models):
    """Stein's FB is logit-normal: FB_i = expit(logit FB + omega z_i), its typical prior is
    Normal on the logit scale, and even a random effect of +8 SD leaves FB_i < 1 with a finite
    joint density and the likelihood equal to the numpy closed form at those FB_i."""
    from scipy.special import expit, logit
    from scipy.stats import norm

    raw = json.loads(load_spec("stein2019").text)
    raw["sampling"]["centering"] = "all"  # FB non-centred: z_FB below
    spec = spec_from_dict(raw)
    assert spec.doc.parameters["FB"].typical.dist == "LogitNormal"
    model = models.build(spec)
    assert "logit_FB" in model.named_vars and "log_FB" not in model.named_vars
    rng = np.random.default_rng(11)
    point = {k: v + rng.normal(0, 0.1, np.shape(v)) for k, v in models.ip(model).items()}
    point["z_FB"] = np.full_like(point["z_FB"], 8.0)
    names = ["Cmax_i", "Tmax_i", "foldx_i", "alpha_i", "beta_i", "FB_i", "sigma", "omega_FB"]
    values = _values(model, names, point)
    expected = expit(point["logit_FB"] + values["omega_FB"] * point["z_FB"])
    np.testing.assert_allclose(values["FB_i"], expected, rtol=1e-12)
    assert np.all(values["FB_i"] < 1.0) and np.all(values["FB_i"] > 0.0)
    assert np.isfinite(models.logp(model)(point))
    prior = model.compile_fn(
        model.logp(vars=[model["logit_FB"]], sum=True),
        inputs=model.value_vars,
        on_unused_input="ignore",
        point_fn=True,
        mode=FAST,
    )(point)
    assert np.isclose(prior, norm.logpdf(point["logit_FB"], logit(0.0079), 1.5), rtol=1e-7)
    graph, ll = _likelihood_graph_and_numpy(model, "stein2019", values, point)
    assert np.isclose(graph, ll, rtol=1e-9)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"FB": {"typical": {"dist": "LogitNormal", "median": 1.5, "sigma": 1.0}}}, "(0, 1)"),
        ({"FB": {"typical": {"dist": "LogNormal", "median": -0.1, "sigma": 1.0}}}, "positive"),
        ({"alpha": {"typical": {"dist": "Normal", "mu": 0.0, "sigma": 1.0}}}, "LogitNormal"),
    ],
)
def test_impossible_typical_priors_are_spec_errors(change, message):
    raw = json.loads(load_spec("stein2019").text)
    for name, value in change.items():
        raw["parameters"][name] = {**raw["parameters"][name], **value}
    with pytest.raises(SpecError, match=rf"parameters\.{next(iter(change))}\.typical") as err:
        spec_from_dict(raw)
    assert message in str(err.value)


def test_centred_distribution_phase_is_the_same_model(small, models):
    """k and T0 listed in ``sampling.centered`` are sampled as log k_i per distribution
    patient: the joint density equals the non-centred one minus the Jacobian n_dp log(omega)."""
    raw = json.loads(load_spec("liu2021").text)
    raw["distribution_phase"] = {"enabled_if": "TRIAL == 'DLBCL'"}
    mn = models.build(spec_from_dict(raw))
    raw["sampling"]["centered"] = [*raw["sampling"]["centered"], "k"]
    mc = models.build(spec_from_dict(raw))
    assert "log_k_i" in mc.named_vars and "z_k" not in mc.named_vars
    rng = np.random.default_rng(8)
    pn = {k: v + rng.normal(0, 0.1, np.shape(v)) for k, v in models.ip(mn).items()}
    fn = mn.compile_fn(
        mn.replace_rvs_by_values([mn["eta_k"], mn["log_k"], mn["omega_k"]]),
        inputs=mn.value_vars,
        on_unused_input="ignore",
        point_fn=True,
        mode=FAST,
    )
    eta, log_k, omega = fn(pn)
    pc = {k: v for k, v in pn.items() if k != "z_k"}
    pc["log_k_i"] = log_k + eta
    assert set(pc) == set(models.ip(mc))
    n_dp = len(eta)
    assert n_dp > 0
    np.testing.assert_allclose(
        models.logp(mn)(pn), models.logp(mc)(pc) + n_dp * np.log(omega), rtol=1e-10
    )


@pytest.mark.parametrize("centering", ["partial", "partial_dynamic"])
def test_partially_centred_random_effects_are_the_same_model(small, models, centering):
    """``centering = "partial"`` samples pc_i ~ Normal(w_i mu_i, omega^w_i) with
    log p_i = mu_i + omega^(1-w_i) (pc_i - w_i mu_i): at corresponding points its joint density
    equals the non-centred one minus sum_i w_i log(omega), for every parameter (Stein's six,
    FB on the logit scale), and the weights come from the data (some near 0, some near 1).
    ``"partial_dynamic"``: the same with w_i(omega) = w_i r / (1 - w_i + w_i r),
    r = (omega / omega_start)^2, evaluated at the point's omega."""
    from bayes_cart.model.scales import parameter_scale, to_scale

    raw = json.loads(load_spec("stein2019").text)
    raw["sampling"] = {"centered": [], "centering": "all"}
    mn = models.build(spec_from_dict(raw))
    raw["sampling"] = {"centered": [], "centering": centering}
    spec_p = spec_from_dict(raw)
    mp = models.build(spec_p)
    weights = mp.bayes_cart_partial_weights
    assert set(weights) == {"Cmax", "Tmax", "foldx", "alpha", "beta", "FB"}
    everything = np.concatenate(list(weights.values()))
    assert everything.min() < 0.2 and everything.max() > 0.8
    rng = np.random.default_rng(21)
    pn = {k: v + rng.normal(0, 0.2, np.shape(v)) for k, v in models.ip(mn).items()}
    names = [x for p in weights for x in (f"{p}_i", f"eta_{p}", f"omega_{p}")]
    got = _values(mn, names, pn)
    pp = {k: v for k, v in pn.items() if not k.startswith("z_")}
    jacobian = 0.0
    for p, w in weights.items():
        scale = parameter_scale(spec_p.doc.parameters[p])
        mu = to_scale(got[f"{p}_i"], scale) - got[f"eta_{p}"]
        omega = got[f"omega_{p}"]
        if centering == "partial_dynamic":
            r = (omega / mp.bayes_cart_partial_omegas[p]) ** 2
            assert abs(r - 1.0) > 1e-3  # the point is not at the start: the weights move
            w = w * r / (1.0 - w + w * r)
        pp[f"pc_{p}"] = w * mu + omega**w * pn[f"z_{p}"]
        jacobian += float(np.sum(w) * np.log(omega))
    assert set(pp) == set(models.ip(mp))
    np.testing.assert_allclose(models.logp(mp)(pp), models.logp(mn)(pn) - jacobian, rtol=1e-9)


def test_prior_constants_are_float64():
    """Spec priors enter in double precision: a Python float that float32 represents exactly
    (sigma = 1.5) would otherwise be a float32 constant, its log a float32 log (~1e-8 off)."""
    from scipy import stats

    from bayes_cart.model.build import prior_dist
    from bayes_cart.model.spec import PriorSpec

    normal = prior_dist(PriorSpec(dist="LogNormal", median=0.002, sigma=1.5), log_scale=True)
    half = prior_dist(PriorSpec(dist="HalfNormal", sigma=1.5))
    x = -5.3
    assert float(pm.logp(normal, x).eval()) == pytest.approx(
        stats.norm.logpdf(x, np.log(0.002), 1.5), abs=1e-13
    )
    assert float(pm.logp(half, 0.4).eval()) == pytest.approx(
        stats.halfnorm.logpdf(0.4, scale=1.5), abs=1e-13
    )


@pytest.mark.parametrize("spec_name", ["liu2021", "stein2019"])
def test_sigma_scaled_coordinates_are_the_same_model(small, models, spec_name):
    """``sampling.sigma_scaled``: every per-patient normal variable ``x ~ Normal(m, s)`` is
    sampled as ``u ~ Normal(a + (m - a) / r, s / r)`` with ``x = a + r (u - a)``,
    ``r = (sigma / SIGMA_START)^v``. At corresponding points the joint density equals the
    original one plus the log Jacobian ``sum log r`` and every individual parameter is the
    same; liu2021 covers the centred block, ``log Cmax_i`` and non-centred ``z``, stein2019 the
    partially centred ``pc``. The elasticities come from the data (not all 0 or 1) and every
    chain starts at its anchors (``u = a``), which are finite and where the joint density is
    finite."""
    raw = json.loads(load_spec(spec_name).text)
    raw["sampling"]["sigma_scaled"] = False
    m0 = models.build(spec_from_dict(raw))
    raw["sampling"]["sigma_scaled"] = True
    m1 = models.build(spec_from_dict(raw))
    scaling = m1.bayes_cart_sigma_scaling
    expected = (
        {"ss_log_beta_T1_i", "ss_log_alpha_i", "ss_log_Cmax_i", "ss_z_rM", "ss_z_deltaM"}
        if spec_name == "liu2021"
        else {f"ss_pc_{p}" for p in ("Cmax", "Tmax", "foldx", "alpha", "beta", "FB")}
    )
    assert set(scaling.scaled) == expected
    assert expected <= {rv.name for rv in m1.free_RVs}
    v = np.concatenate([np.ravel(v) for _, v in scaling.scaled.values()])
    assert 0.0 <= v.min() < 0.25 * ELASTICITY_SHRINK < 0.9 * ELASTICITY_SHRINK < v.max()
    assert v.max() <= ELASTICITY_SHRINK
    for name, (anchor, _) in scaling.scaled.items():  # the start is the anchor
        assert np.all(np.isfinite(anchor))
        np.testing.assert_array_equal(m1.bayes_cart_initvals[name], anchor)
    rng = np.random.default_rng(5)
    p0 = {k: v + rng.normal(0, 0.15, np.shape(v)) for k, v in models.ip(m0).items()}
    sigma = float(np.exp(p0["sigma_log__"]))
    assert abs(sigma / scaling.reference - 1.0) > 0.01  # away from r = 1
    p1 = {k: v for k, v in p0.items()}
    jacobian = 0.0
    for name, (anchor, v) in scaling.scaled.items():
        r = (sigma / scaling.reference) ** v
        p1[name] = anchor + (p1.pop(name[3:]) - anchor) / r
        jacobian += float(np.sum(np.log(r)))
    assert set(p1) == set(models.ip(m1))
    np.testing.assert_allclose(models.logp(m1)(p1), models.logp(m0)(p0) + jacobian, rtol=1e-10)
    names = [d.name for d in m0.deterministics if d.name.endswith("_i") and d.name in m1]
    assert len(names) >= 6
    got0, got1 = _values(m0, names, p0), _values(m1, names, p1)
    for n in names:
        np.testing.assert_allclose(got1[n], got0[n], rtol=1e-10, err_msg=n)
