"""`import bayes_cart as bc` gives the analysis steps, lazily, as the modules define them."""

from __future__ import annotations

import subprocess
import sys

import pytest

import bayes_cart as bc


@pytest.mark.parametrize("name", sorted(bc._LAZY))
def test_each_public_name_is_the_modules_own(name):
    import importlib

    module = importlib.import_module(bc._LAZY[name])
    assert getattr(bc, name) is getattr(module, name)
    assert name in bc.__all__ and name in dir(bc)


@pytest.mark.parametrize("name", sorted(bc._SUBMODULES))
def test_modules_named_like_their_function_are_reached_as_modules(name):
    module = getattr(bc, name)
    assert module.__name__ == bc._SUBMODULES[name]
    assert module.__name__.rsplit(".", 1)[-1] == name
    assert name in dir(bc)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'not_a_function'"):
        bc.not_a_function  # noqa: B018


def test_importing_the_package_does_not_import_pymc():
    code = "import sys, bayes_cart as bc; bc.load_dataset; print('pymc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_reading_and_analysing_a_fit_needs_no_pymc(tmp_path):
    """load_fit and every analysis module import without PyMC/PyTensor (Fit lives apart)."""
    code = (
        "import sys\n"
        "from bayes_cart.inference.io import load_fit\n"
        "import bayes_cart.checks.gof, bayes_cart.checks.vpc, bayes_cart.checks.ppc\n"
        "import bayes_cart.analysis.ck_metrics, bayes_cart.analysis.contrasts\n"
        "import bayes_cart.analysis.virtual_population, bayes_cart.report, bayes_cart.predict\n"
        "import bayes_cart.analysis.loo, bayes_cart.analysis.summary\n"
        "print('pymc' in sys.modules, 'pytensor' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
    from bayes_cart.inference.fit_result import Fit
    from bayes_cart.inference.sampling import Fit as SamplingFit

    assert SamplingFit is Fit  # the sampler returns the same record


def test_importing_the_plots_leaves_the_matplotlib_backend_alone():
    """No matplotlib.use() on import: a notebook's backend stays what the user chose."""
    code = (
        "import matplotlib\n"
        "import bayes_cart.plots.contrasts, bayes_cart.plots.checks, bayes_cart.report\n"
        "print(matplotlib.get_backend())"
    )
    env = {**__import__("os").environ, "MPLBACKEND": "svg"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "svg"
