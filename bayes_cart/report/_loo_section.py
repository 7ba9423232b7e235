"""Report section 11: leave-one-patient-out cross-validation."""

from __future__ import annotations

import pandas as pd
from markupsafe import Markup

from bayes_cart.report._context import _Context, _Parts
from bayes_cart.report._format import _facts, _frame, _h3, _p, _table, _ul

# --------------------------------------------------------------------------------------------
# 11. LOO
# --------------------------------------------------------------------------------------------


def _bad_k_text(bad: pd.DataFrame, n_patients: int, shown: int = 12) -> str:
    """Plain-language warning about the patients with a high Pareto k (worst first)."""
    from bayes_cart.analysis.loo import PARETO_K_THRESHOLD

    worst = ", ".join(
        f"{p} ({k:.2f})"
        for p, k in zip(bad["patient"][:shown], bad["pareto_k"][:shown], strict=True)
    )
    more = f" and {len(bad) - shown} more" if len(bad) > shown else ""
    text = (
        f"Pareto k > {PARETO_K_THRESHOLD} for {len(bad)} of {n_patients} patients: {worst}{more}. "
        "Their leave-one-out estimates are unreliable; check a model comparison that rests on "
        "them by refitting without them (K-fold cross-validation)."
    )
    if len(bad) > 0.5 * n_patients:
        text += (
            " With most patients above the threshold, importance sampling cannot approximate "
            "leaving a patient out of this model (each patient has its own parameters): read "
            "elpd_loo and the comparison as rough only."
        )
    return text


def _section_loo(ctx: _Context, parts: _Parts) -> list[Markup]:
    from bayes_cart.analysis.loo import PARETO_K_THRESHOLD, bad_pareto_k, compare_fits, patient_loo

    out: list[Markup] = [
        _p(
            "Pareto-smoothed importance-sampling leave-one-out cross-validation, leaving out one "
            "patient at a time (all samples of the patient): how well the model predicts a new "
            "patient. elpd_loo is the expected log predictive density (higher is better); p_loo "
            "the effective number of parameters. Patients with Pareto k > 0.7 make the estimate "
            "unreliable for them."
        )
    ]

    def this_fit() -> Markup:
        elpd = patient_loo(ctx.fit)
        bad = bad_pareto_k(elpd)
        items = [
            ("elpd_loo (SE)", f"{float(elpd.elpd_loo):.1f} ({float(elpd.se):.1f})"),
            ("p_loo", f"{float(elpd.p_loo):.1f}"),
            ("patients", int(elpd.n_data_points)),
            (f"patients with Pareto k > {PARETO_K_THRESHOLD}", len(bad)),
        ]
        html = _facts(items)
        if len(bad):
            html += Markup('<div class="warn">') + _p(_bad_k_text(bad, int(elpd.n_data_points)))
            html += Markup("</div>")
        return html

    out.append(_h3("This fit"))
    out.append(parts.run("LOO of this fit", this_fit))
    out.append(_h3("Comparison with other fits"))
    if not ctx.other_fits:
        out.append(_p("No other fit given (command line: --compare OTHER_FIT).", "muted"))
        return out

    def comparison() -> Markup:
        name = getattr(ctx.fit.spec, "name", "this fit")
        fits = {f"{name} (this report)": ctx.fit, **ctx.other_fits}
        table, bad = compare_fits(fits)
        parts.keep("LOO comparison", table)
        rows = []
        for model, r in table.iterrows():
            rows.append(
                {
                    "model": model,
                    "rank": int(r["rank"]),
                    "elpd_loo": f"{r['elpd_loo']:.1f}",
                    "SE": f"{r['se']:.1f}",
                    "elpd_diff": f"{r['elpd_diff']:.1f}",
                    "dSE": f"{r['dse']:.1f}",
                    "p_loo": f"{r['p_loo']:.1f}",
                    "weight": f"{r['weight']:.2f}",
                    f"patients k > {PARETO_K_THRESHOLD}": int(r["n_bad_pareto_k"]),
                }
            )
        html = _table(
            _frame(rows),
            numeric=[
                "rank",
                "elpd_loo",
                "SE",
                "elpd_diff",
                "dSE",
                "p_loo",
                "weight",
                f"patients k > {PARETO_K_THRESHOLD}",
            ],
            caption="Best model first; a difference smaller than about 2 dSE is not clear evidence",
        )
        n_patients = dict(zip(table.index, table["n_patients"], strict=True))
        warns = [
            f"{m}: {_bad_k_text(b, int(n_patients[m]), shown=5)}" for m, b in bad.items() if len(b)
        ]
        if warns:
            html += Markup('<div class="warn">') + _ul(warns) + Markup("</div>")
        return html

    out.append(parts.run("LOO comparison", comparison))
    return out
