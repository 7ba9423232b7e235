"""Report sections 1-2: the data summary and the model card."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from bayes_cart.report._context import (
    _Context,
    _covariate_usage,
    _data_by_group,
    _Parts,
    _posterior_attrs,
    _unit_kind,
)
from bayes_cart.report._format import _facts, _frame, _h3, _num, _p, _pct, _table, _ul
from bayes_cart.units import DAYS_PER_MONTH


def _section_data(ctx: _Context, parts: _Parts) -> list[Markup]:
    fit = ctx.fit
    ds = fit.dataset
    out: list[Markup] = []

    def facts() -> Markup:
        s = ds.summary()
        cens = s["censored"]
        spp = s["samples_per_patient"]
        source = _posterior_attrs(fit).get("data_source") or s["source"]
        t0, t1 = s["time_range"]
        items = [
            ("data", source),
            ("patients", s["patients"]),
            ("samples", s["observations"]),
            (
                "BLQ samples",
                f"{cens['left']} ({_pct(cens['left'] / max(s['observations'], 1), 1)})",
            ),
        ]
        if cens["right"]:
            items.append(("right-censored samples", cens["right"]))
        items += [
            ("samples per patient", f"median {_num(spp['median'], 2)} ({spp['min']}–{spp['max']})"),
            ("sampling times", f"day {_num(t0)} to day {_num(t1)}"),
            ("dosing rows", s["doses"]),
        ]
        counts = ds.infusions.groupby("ID", sort=False).size()
        if (counts > 1).any():
            later = ds.infusions[ds.infusions["INFUSION"] > 1]["TIME"]
            items.append(
                (
                    "patients with several infusions",
                    f"{int((counts > 1).sum())} (later infusions on day {_num(later.min())} to "
                    f"day {_num(later.max())}; one cohort of cells per infusion)",
                )
            )
        return _facts(items)

    out.append(parts.run("data facts", facts))

    def by_trial() -> Markup:
        extra = [c for c in ctx.by if c != ctx.trial and not _is_numeric(ds.patients[c])]
        table = _data_by_group(fit, ctx.trial, extra)
        last = ["" for _ in range(len(table) - 1)] + ["total"] if len(table) > 1 else None
        title = f"Samples and BLQ by {ctx.trial}" if ctx.trial else "Samples and BLQ"
        return _h3(title) + _table(
            parts.keep("samples by trial", table),
            numeric=["patients", "samples", "last sample (day)"],
            row_classes=last,
        )

    out.append(parts.run("samples by trial", by_trial))

    def covariates() -> Markup:
        s = ds.summary()
        usage = _covariate_usage(fit)
        rows = []
        for name, d in s["covariates"].items():
            if d.get("type") == "categorical":
                levels = d.get("levels", {})
                summary = ", ".join(f"{k} {v}" for k, v in levels.items())
                kind = "categorical"
            else:
                summary = (
                    f"median {_num(d.get('median'))} ({_num(d.get('min'))}–{_num(d.get('max'))})"
                )
                kind = "numeric"
            rows.append(
                {
                    "covariate": name,
                    "type": kind,
                    "values (patients)": summary,
                    "missing": d.get("missing", 0),
                    "in the model": "; ".join(usage.get(name, [])) or "not used",
                }
            )
        for name, d in s.get("time_varying", {}).items():
            rows.append(
                {
                    "covariate": f"{name} (time-varying)",
                    "type": d.get("type", ""),
                    "values (patients)": "",
                    "missing": d.get("missing", 0),
                    "in the model": "not used",
                }
            )
        if not rows:
            return _h3("Covariates") + _p("The data have no covariates.")
        return _h3("Covariates") + _table(
            parts.keep("covariates", _frame(rows)), numeric=["missing"]
        )

    out.append(parts.run("covariates", covariates))

    def notes() -> Markup:
        items = list(getattr(fit.model_data, "notes", []) or [])
        items += [str(w) for w in ds.report.warnings if str(w) not in items]
        excluded = ds.report.excluded
        body = _h3("Notes: imputations, exclusions, data warnings")
        body += _ul(items) if items else _p("No imputation, exclusion or data warning.")
        if excluded is not None and len(excluded):
            counts = excluded.groupby("reason").size().reset_index(name="rows")
            body += _p(f"{len(excluded)} row(s) of the data file were excluded:")
            body += _table(parts.keep("excluded rows", counts), numeric=["rows"])
        else:
            body += _p("Excluded rows: none (in the fitted data).", "muted")
        return body

    out.append(parts.run("notes", notes))
    return out


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


# --------------------------------------------------------------------------------------------
# 2. model card
# --------------------------------------------------------------------------------------------


def _prior_range(prior: Any) -> str:
    if prior is None or prior.dist != "LogNormal":
        return ""
    z = 1.6448536269514722
    lo, hi = prior.median * math.exp(-z * prior.sigma), prior.median * math.exp(z * prior.sigma)
    return f"{_num(lo)}–{_num(hi)}"


def _section_model(ctx: _Context, parts: _Parts) -> list[Markup]:
    fit = ctx.fit
    doc = fit.spec.doc
    out: list[Markup] = []

    def header() -> Markup:
        from bayes_cart import __version__

        attrs = _posterior_attrs(fit)
        items = [
            ("model (spec)", doc.name),
            ("description", doc.description),
            ("reference", doc.reference or "–"),
            ("kinetic structure", doc.kinetics),
            ("units", f"time in {doc.time_unit}s; DV in {doc.dv_unit or 'data units'}"),
            ("spec hash (model id)", fit.spec.hash),
            ("spec source", getattr(fit.spec, "source", "–")),
            (
                "bayes_cart version",
                f"{attrs.get('bayes_cart_version', __version__)} (fit); {__version__} (report)",
            ),
        ]
        if doc.notes:
            items.append(("notes", doc.notes))
        return _facts(items)

    out.append(parts.run("model", header))

    def parameters() -> Markup:
        from bayes_cart.kinetics import get_kinetics

        rows = []
        order = [*get_kinetics(doc.kinetics).parameters, *doc.parameters]
        for name in [n for n in dict.fromkeys(order) if n in doc.parameters]:
            p = doc.parameters[name]
            if p.fixed is not None:
                role = f"fixed at {_num(p.fixed)}"
                if _unit_kind(p.unit) == "rate":
                    role += f" ({_num(p.fixed * DAYS_PER_MONTH)} /month)"
            elif p.from_data is not None:
                role = f"set per patient from the data ({p.from_data})"
            else:
                role = "estimated"
            if p.distribution_phase_only:
                role += "; distribution phase only"
            rows.append(
                {
                    "parameter": name,
                    "description": p.description,
                    "unit": p.unit,
                    "role": role,
                    "prior, typical value": p.typical.describe() if p.typical else "–",
                    "90% prior range": _prior_range(p.typical),
                    "prior, IIV SD (log scale)": p.iiv.describe() if p.iiv else "none",
                }
            )
        return _h3("Parameters and priors") + _table(
            parts.keep("parameters and priors", _frame(rows))
        )

    out.append(parts.run("parameters", parameters))

    def structure() -> Markup:
        md = fit.model_data
        blocks = [" – ".join(b) for b in doc.iiv.blocks]
        items: list[tuple[str, Any]] = [
            (
                "IIV",
                "log-normal on "
                + (", ".join(fit.spec.iiv_parameters) or "no parameter")
                + (
                    f"; correlated blocks: {'; '.join(blocks)} (LKJ eta {_num(doc.iiv.lkj_eta)})"
                    if blocks
                    else "; independent"
                ),
            )
        ]
        formulas = doc.covariates.formulas
        if formulas:
            text = "; ".join(f"log {p} ~ {rhs}" for p, rhs in formulas.items())
            items.append(("covariate formulas", text))
            refs = dict(md.design.reference) or dict(doc.covariates.reference)
            items.append(
                ("reference levels", ", ".join(f"{k} = {v}" for k, v in refs.items()) or "–")
            )
            items.append(("prior of each covariate effect", doc.covariates.prior.describe()))
            items.append(
                ("missing categorical values", "an explicit level 'unknown' (not imputed)")
            )
        else:
            items.append(("covariates", "none"))
        if doc.group.mode != "none":
            items.append(
                (
                    "between-trial variability",
                    f"{doc.group.mode} effect of {md.group_column or doc.group.column} on "
                    f"{', '.join(doc.group.parameters)} (SD prior {doc.group.prior.describe()});"
                    f" {len(md.group_levels)} levels",
                )
            )
        err = doc.error
        err_text = f"{err.model} on the log scale; sigma ~ {err.sigma.describe()}"
        if err.additive is not None:
            err_text += f"; additive ~ {err.additive.describe()}"
        if err.nu is not None:
            err_text += f"; nu ~ {err.nu.describe()}"
        items.append(("residual error", err_text))
        items.append(
            (
                "censoring (BLQ)",
                "M3: BLQ samples enter the likelihood as P(value < LLOQ)"
                if doc.censoring.method == "M3"
                else "BLQ samples dropped",
            )
        )
        n_dp = int(np.sum(md.distribution_mask)) if len(md.distribution_mask) else 0
        items.append(
            (
                "distribution phase (k, T0)",
                f"patients with {doc.distribution_phase.enabled_if} ({n_dp} patients)"
                if doc.distribution_phase.enabled_if
                else "none",
            )
        )
        param_text = doc.sampling.parameterisation
        if doc.sampling.parameterisation == "cmax":
            param_text += (
                ": C0's random effect is sampled on the scale of the peak, log Cmax_i = "
                "log C0_i + beta_i (T1_i - T0_i) - k_i T0_i (an exact reparameterisation: the "
                "model, its priors and covariate effects are those of C0)"
            )
        if doc.sampling.centered:
            param_text += f"; centred: {', '.join(doc.sampling.centered)}"
        items.append(("parameterisation", param_text))
        return _h3("Structure") + _facts(items)

    out.append(parts.run("structure", structure))

    def sampler() -> Markup:
        post = fit.idata.posterior
        attrs = _posterior_attrs(fit)
        chains, draws = int(post.sizes["chain"]), int(post.sizes["draw"])
        timings = dict(getattr(fit, "timings", {}) or {})
        settings = dict(getattr(fit, "settings", {}) or {})
        tune = settings.get("tune", attrs.get("tuning_steps", attrs.get("tune")))
        sampler_name = settings.get("sampler", attrs.get("sampler"))
        method = settings.get("method", "nuts")
        if method != "nuts":  # an approximation: no sampler, no chains
            from bayes_cart.inference.approximate import METHOD_LABELS

            items = [
                ("inference", f"{METHOD_LABELS.get(method, method)} (APPROXIMATE, not MCMC)"),
                ("kinetic solver", settings.get("solver", "closed_form")),
                ("draws", f"{chains * draws} draws from the approximation"),
                (
                    "settings",
                    ", ".join(f"{k} {v}" for k, v in settings.get("method_options", {}).items()),
                ),
                ("random seed", settings.get("random_seed")),
                ("time", f"{float(timings.get('sampling_seconds', float('nan'))):.0f} s"),
            ]
            return _h3("Inference") + _facts(items)
        items = [
            ("sampler", sampler_name or "NUTS (backend not recorded in the fit file)"),
            ("kinetic solver", settings.get("solver", "closed_form")),
            ("chains x draws", f"{chains} x {draws} = {chains * draws} posterior draws"),
            (
                "tuning draws per chain",
                tune if tune is not None else "not recorded in the fit file",
            ),
        ]
        seed = settings.get("random_seed", attrs.get("seed"))
        if seed is not None:
            items.append(("random seed", seed))
        if settings.get("target_accept") is not None:
            items.append(("target acceptance", settings["target_accept"]))
        if attrs.get("created_at"):
            items.append(("fitted on", str(attrs["created_at"])[:19].replace("T", " ")))
        for key, label in (
            ("compile_seconds", "compile time"),
            ("sampling_seconds", "sampling time"),
            ("predictive_seconds", "predictive draws"),
        ):
            v = timings.get(key)
            if v is not None and math.isfinite(float(v)):
                items.append((label, f"{float(v):.0f} s"))
        return _h3("Sampler") + _facts(items)

    out.append(parts.run("sampler", sampler))
    return out
