"""Report sections 3-4: diagnostics and population parameters."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from bayes_cart.inference.diagnostics import (
    lengthened_text,
    low_rank_retry_text,
    sigma_scaled_retry_text,
)
from bayes_cart.report._context import _Context, _flat_truth, _param_unit, _Parts, _unit_kind
from bayes_cart.report._format import _ci, _cv, _frame, _h3, _num, _p, _pct, _prob, _table, _ul
from bayes_cart.units import DAYS_PER_MONTH

# --------------------------------------------------------------------------------------------
# 3. diagnostics
# --------------------------------------------------------------------------------------------


def _section_diagnostics(ctx: _Context, parts: _Parts) -> list[Markup]:
    from bayes_cart.inference.diagnostics import BFMI_MIN, ESS_MIN, RHAT_MAX

    d = ctx.fit.diagnostics
    if getattr(d, "method", "nuts") != "nuts":
        return [parts.run("diagnostics", lambda: _approximate_diagnostics(d, parts))]

    def body() -> Markup:
        badge = _badge(d.passed)
        verdict = (
            "The sampler converged: the posterior summaries below can be used."
            if d.passed
            else "The fit FAILED the diagnostics gate: treat every number below as provisional "
            "until the problems listed are fixed."
        )
        worst = dict(d.worst or {})

        def status(ok: bool) -> Markup:
            return Markup('<span class="ok">ok</span>' if ok else '<span class="bad">fail</span>')

        bfmi_ok = not math.isfinite(d.min_bfmi) or d.min_bfmi >= BFMI_MIN
        rows = [
            (
                "max R-hat",
                f"{d.max_rhat:.3f}",
                f"≤ {RHAT_MAX}",
                d.max_rhat <= RHAT_MAX,
                worst.get("r_hat", ""),
            ),
            (
                "min bulk ESS",
                f"{d.min_ess_bulk:.0f}",
                f"≥ {ESS_MIN:.0f}",
                d.min_ess_bulk >= ESS_MIN,
                worst.get("ess_bulk", ""),
            ),
            (
                "min tail ESS",
                f"{d.min_ess_tail:.0f}",
                f"≥ {ESS_MIN:.0f}",
                d.min_ess_tail >= ESS_MIN,
                worst.get("ess_tail", ""),
            ),
            ("divergent transitions", f"{d.divergences}", "0", d.divergences == 0, ""),
            ("min E-BFMI", _num(d.min_bfmi, 2), f"≥ {BFMI_MIN}", bfmi_ok, ""),
            (
                "draws at max tree depth",
                _pct(d.treedepth_saturation, 1),
                "≤ 1%",
                d.treedepth_saturation <= 0.01,
                "",
            ),
            (
                "chains stuck at the end",
                f"{len(d.stuck_chains)}",
                "0",
                not d.stuck_chains,
                ", ".join(f"chain {c['chain']}" for c in d.stuck_chains),
            ),
        ]
        table = _frame(
            [
                {"check": c, "value": v, "threshold": t, "status": status(ok), "worst quantity": w}
                for c, v, t, ok, w in rows
            ]
        )
        html = Markup('<div class="verdict">') + badge + _p(verdict) + Markup("</div>")
        html += _table(parts.keep("checks", table), numeric=["value"])
        gpe = d.gradients_per_ess
        if math.isfinite(gpe):
            html += _p(
                f"Cost: {gpe:,.0f} gradient evaluations (leapfrog steps of all chains) per "
                "effective sample of the worst population quantity; a well-conditioned "
                "posterior of this size needs tens."
            )
        for r in d.restarted_chains:
            html += _p(
                f"Chain {r['chain']} was stuck ({r['reason']}) and was sampled again from a "
                "fresh start; the chains shown are the restarted ones."
            )
        if d.retried:
            html += _p(
                f"The first run had {d.retried['divergences']} divergent transitions; it was "
                f"discarded and every chain sampled again with smaller steps (target_accept "
                f"{d.retried['target_accept']:g}): {d.retried['divergences_after']} "
                "divergences in the run shown."
            )
        if d.extended_chains:
            html += _p(
                f"The first chains mixed too slowly for the gate's R-hat or ESS; "
                f"{d.extended_chains} more chains were sampled with new seeds and kept (their "
                "gradients are counted in the cost above)."
            )
        if d.lengthened:
            html += _p(lengthened_text(d.lengthened) + ".")
        if d.low_rank_retry:
            html += _p(low_rank_retry_text(d.low_rank_retry) + ".")
        if getattr(d, "sigma_scaled_retry", None):
            html += _p(sigma_scaled_retry_text(d.sigma_scaled_retry) + ".")
        html += _h3("Advice")
        html += _ul(list(d.advice)) if d.advice else _p("Nothing to fix.")
        html += _h3("Weakly informed parameters")
        if d.weakly_informed:
            html += _p(
                "Posterior SD above 90% of the prior SD (the data barely inform them; their "
                "estimates mostly restate the prior): " + ", ".join(d.weakly_informed) + "."
            )
        else:
            html += _p("None: every population parameter is informed by the data.")
        return html

    return [parts.run("diagnostics", body)]


def _approximate_diagnostics(d: Any, parts: _Parts) -> Markup:
    """Section 3 of a fit by ADVI, Pathfinder or Laplace: the approximation's own check."""
    from bayes_cart.inference.approximate import METHOD_LABELS

    label = METHOD_LABELS.get(d.method, d.method)
    verdict = (
        f"Approximate inference ({label}): no MCMC gate (there are no chains, so no R-hat, ESS "
        "or divergences). The badge says whether the approximation's own check passed "
        + ("(it did)" if d.passed else "(it did NOT: do not use these estimates)")
        + "; even when it passes, posterior intervals may be too narrow. Confirm with NUTS "
        "(--method nuts) before reporting."
    )
    record = {k: v for k, v in (d.approximation or {}).items() if k not in ("settings",)}
    rows = [
        {"quantity": k.replace("_", " "), "value": _fmt_value(v)}
        for k, v in record.items()
        if not isinstance(v, list | dict)
    ]
    html = Markup('<div class="verdict">') + _badge(d.passed) + _p(verdict) + Markup("</div>")
    html += _table(parts.keep("approximation", _frame(rows)))
    trace = record.get("elbo_trace")
    if trace:
        html += _p(
            "ELBO over the run (mean of each tenth of the iterations): "
            + ", ".join(f"{v:,.1f}" for v in trace)
            + "."
        )
    html += _h3("Advice")
    html += _ul(list(d.advice))
    return html


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return _num(v, 3)
    return str(v)


def _badge(passed: bool) -> Markup:
    return Markup(
        '<span class="badge pass">PASS</span>' if passed else '<span class="badge fail">FAIL</span>'
    )


# --------------------------------------------------------------------------------------------
# 4. population parameters
# --------------------------------------------------------------------------------------------


def _summary(ctx: _Context) -> pd.DataFrame:
    from bayes_cart.analysis.summary import population_summary

    def run() -> pd.DataFrame:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return population_summary(ctx.fit.idata)

    return ctx.cached("summary", run)


def _classify(fit: Any, name: str) -> str:
    from bayes_cart.kinetics import get_kinetics

    kin = set(get_kinetics(fit.spec.kinetics).parameters) | set(fit.spec.parameters) | {"Cmax"}
    gdim = (getattr(fit.model_data, "group_column", None) or "group").lower()
    if ":" in name:
        return "effect"
    if name in kin:
        return "typical"
    if name.startswith(f"omega_{gdim}_"):
        return "trial"
    if name.startswith("omega_"):
        return "iiv"
    if name.startswith("corr_"):
        return "corr"
    if name.startswith("sigma") or name == "nu":
        return "residual"
    return "other"


def _spec_order(fit: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Summary rows in the spec's parameter order (by the parameter each row is about)."""
    from bayes_cart.kinetics import get_kinetics

    names = [*get_kinetics(fit.spec.kinetics).parameters, *fit.spec.parameters]
    order = {p: i for i, p in enumerate(dict.fromkeys(names))}
    order.setdefault("Cmax", order.get("C0", -1))

    def key(r: dict[str, Any]) -> tuple[int, int]:
        name = r["parameter"].split(":", 1)[0]
        kind = _classify(fit, r["parameter"])
        rank = {"typical": 0, "iiv": 1, "corr": 2, "trial": 3, "residual": 4}.get(kind, 5)
        for p in sorted(order, key=len, reverse=True):
            if name == p or name.endswith(f"_{p}"):
                return rank, order[p]
        return rank, len(order)

    return sorted(records, key=key)


def _derived_c0(fit: Any) -> dict[str, Any] | None:
    """Summarise the typical C0 of a ``cmax``-parameterised fit, ``Cmax exp(-beta T1)``."""
    import arviz as az

    post = fit.idata.posterior
    if not all(v in post for v in ("log_Cmax", "beta", "T1")) or "C0" in post:
        return None
    x = np.asarray(post["log_Cmax"] - post["beta"] * post["T1"], dtype=float)  # (chain, draw)
    flat = np.exp(x).ravel()
    return {
        "parameter": "C0",
        "q5": float(np.quantile(flat, 0.05)),
        "q50": float(np.quantile(flat, 0.5)),
        "q95": float(np.quantile(flat, 0.95)),
        "r_hat": float(az.rhat(x)),
        "ess_bulk": float(az.ess(x, method="bulk")),
    }


def _diag_cells(row: Mapping[str, Any]) -> dict[str, str]:
    return {"R-hat": f"{row['r_hat']:.3f}", "ESS bulk": f"{row['ess_bulk']:.0f}"}


def _section_parameters(ctx: _Context, parts: _Parts) -> list[Markup]:
    fit = ctx.fit
    truth = _flat_truth(ctx.truth)
    has_truth = bool(truth)
    out: list[Markup] = [
        _p(
            "Posterior median and 90% credible interval (CrI) of each population parameter. "
            "Typical values are those of a patient at the reference covariate levels, with no "
            "random effect. Rates are per day and per month (x 30.4375 days), times in days. "
            "IIV is the SD of the log parameter and the equivalent "
            "%CV = sqrt(exp(SD^2) - 1) x 100. "
            "Covariate effects are ratios to the reference level (exp of the log-scale effect)."
        )
    ]

    def tv(name: str) -> str:
        return _num(truth[name]) if name in truth else "–"

    def typical() -> Markup:
        s = parts.keep("summary", _summary(ctx))
        rows = []
        specs = fit.spec.parameters
        records = s.to_dict("records")
        derived = _derived_c0(fit)
        if derived is not None and not any(r["parameter"] == "C0" for r in records):
            records.append(derived)
        for r in _spec_order(fit, records):
            name = r["parameter"]
            if _classify(fit, name) != "typical":
                continue
            unit = _param_unit(fit, name)
            kind = _unit_kind(unit)
            desc = specs[name].description if name in specs else ""
            if name == "Cmax":
                desc = "typical peak level E(T1), sampled in place of C0"
                if has_truth and "Cmax" in truth:
                    desc += "; truth = C0 exp(beta T1) of the true typical values"
            elif name == "C0" and derived is not None:
                desc = "typical initial level, derived: Cmax exp(-beta T1)"
            month = (
                _ci(r["q50"] * DAYS_PER_MONTH, r["q5"] * DAYS_PER_MONTH, r["q95"] * DAYS_PER_MONTH)
                if kind == "rate"
                else ""
            )
            row = {
                "parameter": name,
                "description": desc,
                "unit": unit,
                "median [90% CrI]": _ci(r["q50"], r["q5"], r["q95"]),
                "per month": month,
            }
            if has_truth:
                t = truth.get(name)
                row["truth"] = "–" if t is None else _num(t)
                row["truth per month"] = (
                    _num(t * DAYS_PER_MONTH) if t is not None and kind == "rate" else ""
                )
            row.update(_diag_cells(r))
            rows.append(row)
        for name, p in specs.items():
            if p.fixed is None:
                continue
            kind = _unit_kind(p.unit)
            row = {
                "parameter": name,
                "description": p.description,
                "unit": p.unit,
                "median [90% CrI]": f"fixed {_num(p.fixed)}",
                "per month": f"fixed {_num(p.fixed * DAYS_PER_MONTH)}" if kind == "rate" else "",
            }
            if has_truth:
                row["truth"] = tv(name)
                t = truth.get(name)
                row["truth per month"] = (
                    _num(t * DAYS_PER_MONTH) if t is not None and kind == "rate" else ""
                )
            row.update({"R-hat": "", "ESS bulk": ""})
            rows.append(row)
        if not rows:
            return Markup("")
        return _h3("Typical values") + _table(
            parts.keep("typical values", _frame(rows)),
            numeric=["R-hat", "ESS bulk"],
            classes="params",
        )

    out.append(parts.run("typical values", typical))

    def variability() -> Markup:
        from bayes_cart.inference.shrinkage import eta_shrinkage, high_shrinkage_text

        s = _summary(ctx)
        shrinkage = parts.keep("eta-shrinkage", eta_shrinkage(fit.idata))
        shrunk = dict(zip(shrinkage["parameter"], shrinkage["shrinkage"], strict=True))
        rows = []
        for r in _spec_order(fit, s.to_dict("records")):
            name = r["parameter"]
            kind = _classify(fit, name)
            if kind not in ("iiv", "trial", "corr", "residual"):
                continue
            label = {
                "iiv": f"IIV of {name[len('omega_') :]}",
                "trial": "between-trial SD of "
                + name[len(f"omega_{(fit.model_data.group_column or 'group').lower()}_") :],
                "corr": "correlation of the random effects of "
                + " and ".join(name[len("corr_") :].split("_")),
                "residual": "residual SD (log scale)" if name == "sigma" else name,
            }[kind]
            cv = ""
            if kind in ("iiv", "trial") or name == "sigma":
                cv = _ci(_cv(r["q50"]), _cv(r["q5"]), _cv(r["q95"]))
            row = {
                "parameter": name,
                "meaning": label,
                "median [90% CrI]": _ci(r["q50"], r["q5"], r["q95"]),
                "%CV": cv,
            }
            if has_truth:
                t = truth.get(name)
                row["truth"] = (
                    "–" if t is None else (f"{_num(t)} ({_num(_cv(t), 3)}%)" if cv else _num(t))
                )
            if shrunk:
                value = shrunk.get(name[len("omega_") :]) if kind == "iiv" else None
                row["eta-shrinkage"] = "" if value is None else f"{value:.0%}"
            row.update(_diag_cells(r))
            rows.append(row)
        if not rows:
            return Markup("")
        html = _h3("Variability: IIV, between-trial, residual") + _table(
            parts.keep("variability", _frame(rows)),
            numeric=["R-hat", "ESS bulk"],
            classes="params",
        )
        if shrunk:
            html += _p(
                "Eta-shrinkage (NONMEM's ETASHRINKSD): 1 - the SD over patients of their "
                "posterior mean random effects / the median IIV SD. Near 0 each patient's "
                "data pin their own value; above about 30% they say little, and plots or tests "
                "of individual estimates are biased towards no effect. "
                + high_shrinkage_text(shrinkage)
            )
        return html

    out.append(parts.run("variability", variability))

    def effects() -> Markup:
        s = _summary(ctx)
        refs = dict(fit.model_data.design.reference)
        rows = []
        for r in _spec_order(fit, s.to_dict("records")):
            name = r["parameter"]
            if _classify(fit, name) != "effect":
                continue
            param, term = name.split(":", 1)
            col = term.split("[", 1)[0]
            ref = refs.get(col)
            row = {
                "parameter": param,
                "covariate level": term + (f" vs {ref}" if ref else ""),
                "effect (log scale)": _ci(r["q50"], r["q5"], r["q95"]),
                "ratio exp(b) [90% CrI]": _ci(
                    math.exp(r["q50"]), math.exp(r["q5"]), math.exp(r["q95"])
                ),
                "P(ratio > 1)": _prob(_prob_positive(fit, param, term)),
            }
            if has_truth:
                row["true ratio"] = _num(math.exp(truth[name])) if name in truth else "–"
            row.update(_diag_cells(r))
            rows.append(row)
        if not rows:
            return _h3("Covariate effects") + _p("The model has no covariate effect.")
        return _h3("Covariate effects (ratio to the reference level)") + _table(
            parts.keep("covariate effects", _frame(rows)),
            numeric=["R-hat", "ESS bulk", "P(ratio > 1)"],
            classes="params",
        )

    out.append(parts.run("covariate effects", effects))

    def trial_effects() -> Markup:
        md = fit.model_data
        doc = fit.spec.doc
        if doc.group.mode != "random" or not md.group_levels:
            return Markup("")
        gdim = (md.group_column or "group").lower()
        post = fit.idata.posterior
        true_u = (ctx.truth or {}).get("trial_effects", {}) if has_truth else {}
        rows = []
        params = [p for p in doc.group.parameters]
        for level in md.group_levels:
            row: dict[str, Any] = {md.group_column or "group": level}
            for p in params:
                lab = "Cmax" if (doc.sampling.parameterisation == "cmax" and p == "C0") else p
                var = f"u_{gdim}_{lab}"
                if var not in post:
                    continue
                x = np.exp(np.asarray(post[var].sel({gdim: level})).ravel())
                row[f"{p}: exp(u)"] = _ci(*np.quantile(x, [0.5, 0.05, 0.95]))
                if has_truth:
                    t = true_u.get(p, {}).get(str(level))
                    row[f"{p}: truth"] = "–" if t is None else _num(math.exp(float(t)))
            rows.append(row)
        return _h3(
            f"{md.group_column} effects (ratio of the {md.group_column}'s typical value to the "
            "population typical value)"
        ) + _table(parts.keep("trial effects", _frame(rows)))

    out.append(parts.run("trial effects", trial_effects))
    return out


def _prob_positive(fit: Any, param: str, term: str) -> float:
    post = fit.idata.posterior
    var = f"b_{param}"
    if var not in post:
        return float("nan")
    dim = next(d for d in post[var].dims if d not in ("chain", "draw"))
    x = np.asarray(post[var].sel({dim: term})).ravel()
    return float(np.mean(x > 0))
