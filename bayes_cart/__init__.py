"""bayes_cart: Bayesian population analysis of CAR-T cellular kinetics."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bayes_cart")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

from bayes_cart.errors import ConvergenceWarning, DataError, DataWarning, SpecError
from bayes_cart.kinetics import KineticModel, get_kinetics, list_kinetics, register_kinetics

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "DataWarning",
    "KineticModel",
    "SpecError",
    "__version__",
    "get_kinetics",
    "list_kinetics",
    "register_kinetics",
]
