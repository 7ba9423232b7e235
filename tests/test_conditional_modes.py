"""The per-patient Newton refinement of the start that anchors ``sampling.sigma_scaled``."""

import numpy as np

from bayes_cart.model.centring import _patient_loglik, conditional_modes, natural_values
from bayes_cart.model.initial_values import SIGMA_START, starting_point
from bayes_cart.model.model_data import prepare_model_data
from bayes_cart.model.spec import load_spec
from bayes_cart.simulate import PopulationParameters, make_design, simulate_patients

TRUTH = PopulationParameters(
    kinetics="liu2021",
    typical={"C0": 40.0, "beta": 0.35, "T1": 11.0, "alpha": 0.12, "rM": 0.002, "deltaM": 0.004},
    fixed={"k": 0.0, "T0": 0.0},
    omega={"C0": 0.5, "beta": 0.3, "T1": 0.2, "alpha": 0.4},
    sigma=0.3,
)


def _objective(spec, md, values, centres, omegas, names):
    f = _patient_loglik(spec, md, SIGMA_START)(natural_values(spec, md, values))
    return f - sum(0.5 * ((values[p] - centres[p]) / omegas[p]) ** 2 for p in names)


def test_refined_values_raise_every_patients_objective_and_approach_the_truth():
    """Each patient's objective (log-likelihood x normal IIV prior at the start) is at least
    as high after the refinement, strictly higher for most; with 9 samples per patient the
    refined log beta and T1 are closer to the simulated truth than the crude profile reading
    and log C0 (which the crude reading takes from the first samples) no further (root mean
    square error over 30 patients)."""
    import bayes_cart as bc

    design = make_design(30, times=[1, 4, 7, 10, 14, 21, 28, 60, 90])
    sim = simulate_patients(design, TRUTH, lloq=1.0, random_seed=11)
    dataset = bc.load_dataset(sim.data)
    spec = load_spec("liu2021")
    md = prepare_model_data(dataset, spec)
    start = starting_point(spec, md)
    names = ["C0", "beta", "T1", "alpha", "rM", "deltaM"]
    refined = conditional_modes(spec, md, start["logs"], start["omegas"], SIGMA_START, names)
    centres = {p: float(np.median(start["logs"][p])) for p in names}
    before = _objective(spec, md, start["logs"], centres, start["omegas"], names)
    after = _objective(spec, md, refined, centres, start["omegas"], names)
    assert np.all(after >= before - 1e-9)
    assert np.mean(after > before + 1e-6) > 0.8
    truth = sim.truth.set_index("ID").loc[list(md.patient_ids)]
    for p, ratio in (("beta", 0.9), ("T1", 0.9), ("C0", 1.05)):
        x = np.log(truth[p].to_numpy())
        crude = np.sqrt(np.mean((start["logs"][p] - x) ** 2))
        fine = np.sqrt(np.mean((refined[p] - x) ** 2))
        assert fine < ratio * crude, (p, crude, fine)
