"""Property-based fuzzing of the front door: datasets and specs with injected defects (issue 12).

Every outcome is either a successful load with every source row accounted for (samples +
doses + listed exclusions = rows read; the pre-infusion baseline samples are among the listed
exclusions) or the package's own error (``DataError`` / ``SpecError``) naming the row, column,
patient or spec key at fault; never another exception. The datasets are patients drawn from the
bundled example (its NONMEM-style layout) with up to three defects each; the specs are the
shipped ones with up to three defects each.

The number of examples is bounded and the examples are derandomised (the same every run, no
example database), so the fast tier stays under about 20 s and never flakes. Run with ``-s``
to see the statistics (examples tried, defects injected, outcomes).
"""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bayes_cart.data.dataset import load_dataset  # noqa: E402
from bayes_cart.errors import DataError, SpecError  # noqa: E402
from bayes_cart.example import example_data_path  # noqa: E402
from bayes_cart.model.spec import IIV_PRIORS, POSITIVE_PRIORS, load_spec, spec_from_dict  # noqa: E402

#: Bounded, reproducible runs for the fast tier: every defect kind gets ``PER_DEFECT``
#: examples of its own (with up to one more defect), then ``MIXED`` examples draw 0-3 defects.
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PER_DEFECT = 6
MIXED = 60


def _fuzz(check: Callable[[Any], None], strategy: Callable[..., Any], kinds: list[str]) -> None:
    """Run ``check`` on ``PER_DEFECT`` examples per defect kind, then ``MIXED`` mixed ones."""
    for kind in kinds:
        settings(FUZZ, max_examples=PER_DEFECT)(given(case=strategy(forced=kind, extra=1))(check))()
    settings(FUZZ, max_examples=MIXED)(given(case=strategy(forced=None, extra=3))(check))()


def _example() -> pd.DataFrame:
    """The bundled example as text cells (``.`` is its missing value)."""
    if not hasattr(_example, "table"):
        _example.table = pd.read_csv(example_data_path(), dtype=str, keep_default_na=False)
    return _example.table


# --------------------------------------------------------------------------------------------
# dataset defects: each takes the table (text cells) and hypothesis' draw, returns a new table
# --------------------------------------------------------------------------------------------


def _row(draw: Callable, table: pd.DataFrame, evid: str | None = None) -> int:
    """A row of the table (of that EVID when given and there is one)."""
    rows = list(table.index)
    if evid is not None and "EVID" in table:
        rows = list(table.index[table["EVID"] == evid]) or rows
    return draw(st.sampled_from(rows))


def _set(table: pd.DataFrame, row: int, column: str, value: str) -> pd.DataFrame:
    table = table.copy()
    if column not in table.columns:
        table[column] = "."
    table.loc[row, column] = value
    return table


def _missing_column(table, draw):
    column = draw(st.sampled_from(["ID", "TIME", "DV"]))
    return table.drop(columns=[column], errors="ignore")


def _text_time(table, draw):
    value = draw(st.sampled_from(["seven", "1,5", "day 3", "", "NaN", "inf", "-inf", "1e400"]))
    return _set(table, _row(draw, table), "TIME", value)


def _text_dv(table, draw):
    value = draw(st.sampled_from(["high", "<LLOQ", "", "1.2.3", "inf", "nan", "BLQ", "1e400"]))
    return _set(table, _row(draw, table, "0"), "DV", value)


def _negative_dv(table, draw):
    value = draw(st.sampled_from(["-5", "0", "-0.001", "-1e300"]))
    return _set(table, _row(draw, table, "0"), "DV", value)


def _duplicated_row(table, draw):
    row = _row(draw, table)
    pos = list(table.index).index(row)
    return pd.concat([table.iloc[: pos + 1], table.iloc[pos : pos + 1], table.iloc[pos + 1 :]])


def _nan_covariate(table, draw):
    column = draw(st.sampled_from(["AGE", "RESPONSE", "TUMOR_TYPE", "CD4CD8"]))
    value = draw(st.sampled_from(["", ".", "NA", "nan"]))
    row = _row(draw, table)
    if draw(st.booleans()) or "ID" not in table:  # a single row, or the whole patient
        return _set(table, row, column, value)
    table = table.copy()
    table.loc[table["ID"] == table.loc[row, "ID"], column] = value
    return table


def _unknown_cens(table, draw):
    value = draw(st.sampled_from(["2", "-2", "x", "0.5", "9", "yes"]))
    return _set(table, _row(draw, table, "0"), "CENS", value)


def _blq_inconsistent(table, draw):
    table = table.copy()
    table["LLOQ"] = "10"
    table["BLQ"] = "0"
    if draw(st.booleans()):
        table = table.drop(columns=["CENS"], errors="ignore")
    row = _row(draw, table, "0")
    kind = draw(st.sampled_from(["flag above lloq", "bad flag", "no lloq", "cens disagrees"]))
    if kind == "flag above lloq":
        table.loc[row, ["BLQ", "DV"]] = ["1", "500"]
    elif kind == "bad flag":
        table.loc[row, "BLQ"] = draw(st.sampled_from(["2", "x", "-1"]))
    elif kind == "no lloq":
        table.loc[row, ["BLQ", "LLOQ"]] = ["1", "."]
    elif "CENS" in table.columns:
        table.loc[row, ["BLQ", "CENS"]] = ["1", "0"]
    return table


def _negative_time(table, draw):
    return _set(table, _row(draw, table, "0"), "TIME", draw(st.sampled_from(["-1", "-0.5"])))


def _dose_negative_time(table, draw):
    return _set(table, _row(draw, table, "1"), "TIME", "-2")


def _unknown_evid(table, draw):
    value = draw(st.sampled_from(["3", "5", "x", "2", "4", "1.5"]))
    return _set(table, _row(draw, table), "EVID", value)


def _mdv_observation(table, draw):
    return _set(table, _row(draw, table, "0"), "MDV", "1")


def _missing_amt(table, draw):
    return _set(table, _row(draw, table, "1"), "AMT", draw(st.sampled_from([".", "", "-1", "x"])))


def _covariate_varies(table, draw):
    column = draw(st.sampled_from(["AGE", "RESPONSE", "TRIAL"]))
    value = {"AGE": "99", "RESPONSE": "other", "TRIAL": "elsewhere"}[column]
    return _set(table, _row(draw, table), column, value)


def _doses_only_patient(table, draw):
    extra = table.iloc[:1].copy()
    if "ID" in extra:
        extra["ID"] = "DOSE-ONLY"
    for column, value in (("EVID", "1"), ("AMT", "1e8"), ("MDV", "1"), ("DV", ".")):
        if column in extra:
            extra[column] = value
    return pd.concat([table, extra])


def _id_variant(table, draw):
    if "ID" not in table:
        return table
    row = _row(draw, table)
    old = str(table.loc[row, "ID"])
    new = draw(st.sampled_from([old + " ", old.lower(), old + ".0", " " + old]))
    return _set(table, row, "ID", new)


def _empty_id(table, draw):
    return _set(table, _row(draw, table), "ID", draw(st.sampled_from(["", "."])))


def _shuffled_rows(table, draw):
    seed = draw(st.integers(0, 2**16))
    return table.sample(frac=1.0, random_state=seed)


def _huge_value(table, draw):
    column = draw(st.sampled_from(["DV", "TIME"]))
    return _set(table, _row(draw, table, "0"), column, draw(st.sampled_from(["1e308", "1e30"])))


def _dosing_item(table, draw):
    column, value = draw(
        st.sampled_from([("RATE", "-2"), ("RATE", "10"), ("ADDL", "2"), ("II", "7"), ("SS", "1")])
    )
    table = table.copy()
    table[column] = "0" if column != "RATE" else "."
    return _set(table, _row(draw, table, "1"), column, value)


def _role_twice(table, draw):
    table = table.copy()
    name = draw(st.sampled_from(["y", "conc", "obs"]))
    table[name] = table["DV"] if "DV" in table else "1"
    return table


def _markup_text(table, draw):
    value = draw(st.sampled_from(["[/site 2]", "[bold]x", "Müller", "a,b", 'quote"d']))
    return _set(table, _row(draw, table), "RESPONSE", value)


def _all_blq_patient(table, draw):
    if "ID" not in table or "CENS" not in table:
        return table
    table = table.copy()
    patient = table.loc[_row(draw, table), "ID"]
    rows = table["ID"] == patient
    if "EVID" in table:
        rows &= table["EVID"] == "0"
    table.loc[rows, "CENS"] = "1"
    return table


DATA_DEFECTS: dict[str, Callable[[pd.DataFrame, Callable], pd.DataFrame]] = {
    "missing column": _missing_column,
    "text in TIME": _text_time,
    "text in DV": _text_dv,
    "DV <= 0": _negative_dv,
    "duplicated row": _duplicated_row,
    "missing covariate": _nan_covariate,
    "unknown CENS code": _unknown_cens,
    "BLQ flag inconsistent": _blq_inconsistent,
    "negative TIME (baseline)": _negative_time,
    "dose at negative TIME": _dose_negative_time,
    "unknown EVID": _unknown_evid,
    "MDV=1 observation": _mdv_observation,
    "bad AMT": _missing_amt,
    "covariate varies within patient": _covariate_varies,
    "patient with doses only": _doses_only_patient,
    "look-alike ID": _id_variant,
    "empty ID": _empty_id,
    "rows shuffled": _shuffled_rows,
    "huge value": _huge_value,
    "dosing item (RATE/ADDL/II/SS)": _dosing_item,
    "two columns for DV": _role_twice,
    "markup/odd text": _markup_text,
    "all-BLQ patient": _all_blq_patient,
}


@st.composite
def defective_datasets(
    draw, forced: str | None = None, extra: int = 3
) -> tuple[pd.DataFrame, list[str]]:
    """A few example patients (optionally thinned) with ``forced`` and up to ``extra`` defects."""
    table = _example()
    ids = list(dict.fromkeys(table["ID"]))
    chosen = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=4, unique=True))
    table = table[table["ID"].isin(chosen)].reset_index(drop=True)
    if draw(st.booleans()):  # thin the sampling: keep the first k rows of each patient
        k = draw(st.integers(2, 8))
        table = table.groupby("ID", sort=False).head(k).reset_index(drop=True)
    defects = [forced] if forced else []
    defects += draw(st.lists(st.sampled_from(sorted(DATA_DEFECTS)), max_size=extra))
    for name in defects:
        table = DATA_DEFECTS[name](table, draw).reset_index(drop=True)
    return table, defects


#: Problems of the file as a whole: they name the file (the DataError's source), not a place.
WHOLE_FILE = ("no observation rows", "no data rows", "file is empty", "not a text file")


def _names_its_place(problem: Any) -> bool:
    place = (problem.row, problem.column, problem.patient)
    return any(x is not None for x in place) or problem.message.startswith(WHOLE_FILE)


def _check_accounted(data: Any, n_rows: int) -> None:
    obs = set(data.observations["ROW"])
    doses = set(data.doses["ROW"]) if "ROW" in data.doses else set()
    excluded = set(data.report.excluded["ROW"])
    baseline = set(data.baseline["ROW"])
    assert len(obs) == len(data.observations)
    assert not (obs & doses) and not (obs & excluded) and not (doses & excluded)
    assert baseline <= excluded  # baseline samples are kept and listed as not fitted
    assert len(data.observations) + len(data.doses) + len(excluded) == n_rows
    assert obs | doses | excluded == set(range(1, n_rows + 1))


def test_loader_fuzz_every_outcome_is_a_load_or_a_data_error(tmp_path: Path):
    """Random example patients with injected defects: loaded with every row accounted for,
    or refused with a DataError whose every problem names a row, column or patient."""
    stats: Counter[str] = Counter()
    injected: Counter[str] = Counter()
    alone: Counter[tuple[str, str]] = Counter()  # outcome of the examples with one defect

    def check(case: tuple[pd.DataFrame, list[str]]) -> None:
        table, defects = case
        stats["examples"] += 1
        injected.update(defects)
        stats["defects"] += len(defects)
        path = tmp_path / "fuzz.csv"
        table.to_csv(path, index=False)
        n_rows = len(table)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data = load_dataset(path)
        except DataError as exc:
            stats["rejected (DataError)"] += 1
            event("rejected")
            assert exc.problems, str(exc)
            vague = [str(p) for p in exc.problems if not _names_its_place(p)]
            assert not vague, f"{defects}: problems naming no row, column or patient: {vague}"
            assert str(path) in str(exc)
            if all(p.message.startswith(WHOLE_FILE) for p in exc.problems):
                stats["rejected as a whole file"] += 1
            if len(defects) == 1:
                alone[(defects[0], "rejected")] += 1
            return
        stats["loaded"] += 1
        if len(defects) == 1:
            alone[(defects[0], "loaded")] += 1
        stats["loaded with defects" if defects else "loaded clean"] += 1
        event("loaded")
        _check_accounted(data, n_rows)

    _fuzz(check, defective_datasets, sorted(DATA_DEFECTS))
    _print_stats("loader fuzzing", stats, injected)
    print(
        "  outcome with that defect alone: "
        + ", ".join(f"{d}: {o} {n}" for (d, o), n in sorted(alone.items()))
    )
    assert stats["loaded"] and stats["rejected (DataError)"]
    assert set(injected) == set(DATA_DEFECTS), set(DATA_DEFECTS) - set(injected)


# --------------------------------------------------------------------------------------------
# spec defects: each edits the raw spec and returns (the key the error must name, its stage
# [, the path it wrote when that is above the key]);
# "form" problems are found by pydantic and always listed together; "semantic" ones (between
# tables) are listed together once the form is right
# --------------------------------------------------------------------------------------------


def _estimated(raw: dict, draw: Callable, with_iiv: bool = False) -> str:
    names = [
        n
        for n, p in raw["parameters"].items()
        if p.get("typical")
        and p["typical"]["dist"] == "LogNormal"
        and (p.get("iiv") or not with_iiv)
    ]
    return draw(st.sampled_from(sorted(names)))


def _leaves(node: Any, prefix: tuple = ()) -> list[tuple]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, (*prefix, k))]
    if isinstance(node, float | int) and not isinstance(node, bool):
        return [prefix]
    return []


def _put(raw: dict, path: tuple, value: Any) -> None:
    node = raw
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


def _sd_median_nonpositive(raw, draw):
    name = _estimated(raw, draw)
    raw["parameters"][name]["typical"]["median"] = draw(st.sampled_from([0.0, -1.0, -1e-9]))
    return f"parameters.{name}.typical", "form"


def _sd_sigma_nonpositive(raw, draw):
    name = _estimated(raw, draw)
    raw["parameters"][name]["typical"]["sigma"] = draw(st.sampled_from([0.0, -0.5]))
    return f"parameters.{name}.typical.sigma", "form"


def _non_finite(raw, draw):
    path = draw(st.sampled_from(sorted(_leaves(raw))))
    _put(raw, path, draw(st.sampled_from([math.inf, -math.inf, math.nan])))
    return ".".join(path), "form"


def _normal_on_omega(raw, draw):
    name = _estimated(raw, draw, with_iiv=True)
    raw["parameters"][name]["iiv"] = {"dist": "Normal", "mu": 0.0, "sigma": 1.0}
    return f"parameters.{name}.iiv", "form"


def _uniform_order(raw, draw):
    lower, upper = draw(st.sampled_from([(1.0, 0.5), (0.3, 0.3)]))
    raw["error"]["sigma"] = {"dist": "Uniform", "lower": lower, "upper": upper}
    return "error.sigma", "form"


def _fixed_negative(raw, draw):
    name = draw(st.sampled_from(sorted(raw["parameters"])))
    raw["parameters"][name] = {"fixed": draw(st.sampled_from([-0.01, -1.0]))}
    return f"parameters.{name}.fixed", "form", f"parameters.{name}"


def _unknown_key(raw, draw):
    where = draw(st.sampled_from([(), ("sampling",), ("error",), ("covariates",)]))
    node = raw
    for k in where:
        node = node[k]
    key = draw(st.sampled_from(["censorin", "sigmaa", "typo", "centred"]))
    node[key] = 1
    return ".".join((*where, key)), "form"


def _wrong_type(raw, draw):
    name = _estimated(raw, draw)
    raw["parameters"][name]["typical"]["sigma"] = draw(st.sampled_from(["one", [1.0], {"a": 1}]))
    return f"parameters.{name}.typical.sigma", "form"


def _missing_argument(raw, draw):
    name = _estimated(raw, draw)
    raw["parameters"][name]["typical"] = {"dist": "LogNormal", "median": 1.0}
    return f"parameters.{name}.typical", "form"


def _unknown_dist(raw, draw):
    name = _estimated(raw, draw)
    raw["parameters"][name]["typical"]["dist"] = draw(st.sampled_from(["Gamma", "lognormal"]))
    return f"parameters.{name}.typical.dist", "form"


def _negative_sd_prior(raw, draw):
    where = draw(st.sampled_from(["group", "error"]))
    prior = draw(
        st.sampled_from(
            [
                {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
                {"dist": "Uniform", "lower": -1.0, "upper": 1.0},
            ]
        )
    )
    if where == "group":
        raw["group"]["prior"] = prior
        return "group.prior", "form"
    raw["error"]["sigma"] = prior
    return "error.sigma", "form"


def _normal_typical(raw, draw):
    name = _estimated(raw, draw)
    raw["parameters"][name]["typical"] = {"dist": "Normal", "mu": 0.0, "sigma": 1.0}
    return f"parameters.{name}.typical", "semantic"


def _block_not_halfnormal(raw, draw):
    blocks = raw["iiv"]["blocks"]
    if not blocks:
        return None
    name = draw(st.sampled_from(sorted(blocks[0])))
    raw["parameters"][name]["iiv"] = {"dist": "Exponential", "lam": 2.0}
    return f"parameters.{name}.iiv", "semantic"


def _unknown_parameter(raw, draw):
    raw["parameters"]["bogus"] = {"fixed": 1.0}
    return "parameters.bogus", "semantic"


SPEC_DEFECTS: dict[str, Callable[[dict, Callable], tuple[str, ...] | None]] = {
    "LogNormal median <= 0": _sd_median_nonpositive,
    "sigma <= 0": _sd_sigma_nonpositive,
    "inf or nan": _non_finite,
    "Normal on an omega": _normal_on_omega,
    "Uniform lower >= upper": _uniform_order,
    "fixed < 0": _fixed_negative,
    "unknown key": _unknown_key,
    "wrong type": _wrong_type,
    "missing prior argument": _missing_argument,
    "unknown distribution": _unknown_dist,
    "SD prior that can be negative": _negative_sd_prior,
    "Normal typical value": _normal_typical,
    "IIV in a block not HalfNormal": _block_not_halfnormal,
    "unknown parameter": _unknown_parameter,
}

_SHIPPED = {name: load_spec(name).text for name in ("liu2021", "liu2021_meta", "stein2019")}


@st.composite
def defective_specs(
    draw, forced: str | None = None, extra: int = 3
) -> tuple[dict, list[str], list[tuple[str, str]]]:
    """A shipped spec (its canonical JSON) with ``forced`` and up to ``extra`` defects."""
    raw = json.loads(_SHIPPED[draw(st.sampled_from(sorted(_SHIPPED)))])
    names = [forced] if forced else []
    names += draw(st.lists(st.sampled_from(sorted(SPEC_DEFECTS)), max_size=extra))
    expected = []
    for name in names:
        found = SPEC_DEFECTS[name](raw, draw)
        if found is None:
            continue
        key, stage, *scope = found
        written = (scope[0] if scope else key).split(".")
        # a later edit at, above or below an earlier defect's key replaces or hides it
        expected = [
            (k, s)
            for k, s in expected
            if k.split(".")[: len(written)] != written
            and written[: len(k.split("."))] != k.split(".")
        ]
        expected.append((key, stage))
    return raw, names, expected


def _valid_by_oracle(spec: Any) -> bool:
    """Independent check of an accepted spec: every number finite, every prior possible."""
    doc = json.loads(spec.text)
    for path in _leaves(doc):
        node = doc
        for k in path:
            node = node[k]
        if not math.isfinite(node):
            return False
    priors = [
        (f"parameters.{n}.{s}", p[s])
        for n, p in doc["parameters"].items()
        for s in ("typical", "iiv")
        if p.get(s)
    ]
    priors += [("group.prior", doc["group"]["prior"]), ("error.sigma", doc["error"]["sigma"])]
    for key, prior in priors:
        if prior.get("sigma") is not None and prior["sigma"] <= 0:
            return False
        if prior["dist"] == "LogNormal" and prior["median"] <= 0:
            return False
        if prior["dist"] == "Uniform" and not prior["lower"] < prior["upper"]:
            return False
        if key.endswith(".iiv") and prior["dist"] not in IIV_PRIORS:
            return False
        if key in ("group.prior", "error.sigma") and prior["dist"] not in POSITIVE_PRIORS:
            return False
    return all((p.get("fixed") is None or p["fixed"] >= 0) for p in doc["parameters"].values())


def test_spec_fuzz_every_outcome_is_a_spec_or_a_spec_error_naming_the_key():
    """Shipped specs with injected defects: each impossible value is refused with its key
    (all the form problems at once), an accepted spec passes an independent oracle, and no
    other exception escapes."""
    stats: Counter[str] = Counter()
    injected: Counter[str] = Counter()

    def check(case: tuple[dict, list[str], list[tuple[str, str]]]) -> None:
        raw, names, expected = case
        stats["examples"] += 1
        injected.update(names)
        stats["defects"] += len(names)
        try:
            spec = spec_from_dict(raw, source="fuzz.toml")
        except SpecError as exc:
            stats["rejected (SpecError)"] += 1
            event("rejected")
            assert exc.problems
            for problem in exc.problems:  # each line starts with a dotted key
                assert ": " in problem and " " not in problem.split(": ", 1)[0], problem
            text = str(exc)
            form = [k for k, stage in expected if stage == "form"]
            shown = form or [k for k, _ in expected]
            missing = [k for k in shown if f"{k}:" not in text and f"{k}." not in text]
            assert not missing, f"{names}: {missing} not named in\n{text}"
            return
        stats["accepted"] += 1
        event("accepted")
        assert not expected, f"{names} accepted: {expected}"
        assert _valid_by_oracle(spec)

    _fuzz(check, defective_specs, sorted(SPEC_DEFECTS))
    _print_stats("spec fuzzing", stats, injected)
    assert stats["accepted"] and stats["rejected (SpecError)"]
    assert set(injected) == set(SPEC_DEFECTS), set(SPEC_DEFECTS) - set(injected)


def _print_stats(title: str, stats: Counter, injected: Counter) -> None:
    print(f"\n{title}: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
    print("  defects injected: " + ", ".join(f"{k} {v}" for k, v in sorted(injected.items())))
