"""The markdown report of ``probe compare``: what was run, the tables, the figures."""

from __future__ import annotations

from pathlib import Path

from probe.core.io import StagedOutputs

from probe.compare.results import CompareResult, file_safe
from probe.report.compare_plots import (dead_rate_figure, loss_curves_figure, slope_sweep_figure,
                                        speedup_by_target_figure, steps_paired_figure)
from probe.report.circuit_figure import draw_circuit
from probe.report.compare_view import circuit_table, convergence_table, diagnostics_table, targets_table
from probe.report.diagnostic_plots import grad_ratio_figure, sign_routes_figure
from probe.report.fmt import fmt
from probe.report.markdown import ReportWriter, environment_lines, md_table, rich_table_markdown


CIRCUIT_DPI = 90  # five circuit pictures per report: keep each well under half a megabyte
BORN_DEAD_NOTE = ("*born dead: at initialisation some hidden layer has every unit at z <= 0 on every "
                  "evaluation sample. A ReLU network's output is then constant; a leaky network still "
                  "passes the signal, scaled by its slope.*")


def _steps(value: float | None, budget: int) -> str:
    """Median steps, saying so when the median run never reached the target."""
    if value is None:
        return fmt(None)
    return f"> {budget} (not reached)" if value > budget else fmt(value)


def scenario_block(result: CompareResult) -> str:
    """Every scenario setting as a table, so that a reader can rerun it exactly."""
    sc = result.scenario.to_dict()
    rows = [["name", sc["name"]], ["description", sc["description"]]]
    for section in ("data", "model", "train"):
        for key, value in sc[section].items():
            rows.append([f"{section}.{key}", f"`{value}`"])
    return md_table(["setting", "value"], rows)


def comparisons_table(result: CompareResult) -> str:
    """Per pair: the primary target's paired numbers (sign test on the decided pairs)."""
    rows = []
    for c in result.comparisons:
        rows.append([f"{c.a} vs {c.b}", fmt(c.speedup), _ci((None, c.ci_low, c.ci_high)),
                     f"{c.wins_a}–{c.wins_b} ({c.ties} ties)", fmt(c.p_value, ".2g"),
                     f"{c.reached_a}/{c.seeds} – {c.reached_b}/{c.seeds}"])
    return md_table(["pair (a vs b)", "median steps a/b", "95% CI", "decided pairs won a–b", "sign test p",
                     "reached target a – b"], rows)


def losses_table(result: CompareResult) -> str:
    """Per pair and measure: medians, seeds where each is better (lower loss, higher accuracy), the paired
    Wilcoxon test, the verdict."""
    rows = [[f"{c.a} vs {c.b}", lc.measure, fmt(lc.median_a), fmt(lc.median_b), f"{lc.wins_a}–{lc.wins_b}",
             fmt(lc.p_value, ".2g"), lc.winner or "inconclusive"]
            for c in result.comparisons for lc in c.losses]
    return md_table(["pair (a vs b)", "measure", "median a", "median b", "better on a–b", "Wilcoxon p",
                     "better (p < 0.05)"], rows)


def write_compare_report(result: CompareResult, path: str | Path, command: str,
                         outputs: StagedOutputs | None = None, scenario_toml: str | None = None) -> Path:
    """Write the report and its figures atomically; returns the markdown path.

    ``scenario_toml``: an ad-hoc scenario's TOML (``--data``), shown so the run can be repeated.
    """
    sc = result.scenario
    labels = ", ".join(v.label for v in result.variants)
    diag_groups = {v.label: [r.diagnostics for r in result.runs
                             if r.variant == v.label and r.diagnostics is not None]
                   for v in result.variants}
    has_diag = all(diag_groups.values())
    with ReportWriter(path, outputs) as rw:
        rw.add(f"# probe compare: {labels} on {sc.name}",
               "\n".join([*environment_lines(command, result.device),
                          f"- seeds: {sc.train.seeds} per variant (seed k gives every variant the same "
                          f"initial weights and data order); epochs run: {result.epochs_completed}"
                          + (" (interrupted)" if result.interrupted else "")]),
               "## Verdict", "\n".join(f"- **{c.a} vs {c.b}:** {c.verdict}" for c in result.comparisons),
               rich_table_markdown(convergence_table(result), heading=2), BORN_DEAD_NOTE,
               comparisons_table(result), "## Losses, paired by seed", losses_table(result))
        trained = result.epochs_completed > 0
        if trained:
            rw.figure(loss_curves_figure(result), "loss_curves.png", "loss curves per variant")
            rw.figure(steps_paired_figure(result), "steps_to_target.png", "steps to target paired by seed")
            rw.add(rich_table_markdown(targets_table(result), heading=2))
            rw.figure(speedup_by_target_figure(result), "speedup_by_target.png", "speedup against the target loss")
        else:
            rw.add("*No training was run (0 epochs): this report describes the networks at initialisation, "
                   "so it has no loss curves, steps to target or slope sweep.*")
        sweep = slope_sweep_figure(result) if trained else None
        if sweep is not None:
            rw.add("## Slope sweep", md_table(
                ["variant", "slope", "steps to target (median)", "95% CI", "final loss (median)", "95% CI",
                 "eval loss (median)", "95% CI"],
                [[iv.variant, f"{iv.slope:.3g}" + (" (learned)" if iv.learnable else ""),
                  _steps(iv.steps_interval[0], result.budget), _ci(iv.steps_interval),
                  fmt(iv.final_loss_interval[0]), _ci(iv.final_loss_interval),
                  fmt(iv.eval_loss[0]), _ci(iv.eval_loss)]
                 for iv in result.summaries]),
                f"*Never-reached runs count as {result.budget + 1} steps (the budget + 1), as in the paired "
                "statistics.*")
            rw.figure(sweep, "slope_sweep.png", "steps to target and final loss against the slope")
        if has_diag:
            rw.add(rich_table_markdown(diagnostics_table(result), heading=2))
            dead = dead_rate_figure(result)
            if dead is not None:
                rw.figure(dead, "dead_rate.png", "dead rate per layer over training")
            rw.figure(grad_ratio_figure(diag_groups), "grad_ratio.png",
                      "measured grad_ratio against the nominal slope")
            rw.figure(sign_routes_figure({s.variant: s.negative_route_share for s in result.summaries}),
                      "sign_routes.png", "final-layer sign routes per variant")
        if any(s.circuit for s in result.summaries):
            rw.add(rich_table_markdown(circuit_table(result), heading=2),
                   "The circuit of negative predictions of output 0, for the first seed of each variant "
                   "(edge colour: sign of the contribution; width: its size; wide layers show their strongest "
                   "edges only):")
            for v in result.variants:
                run = next((r for r in result.runs if r.variant == v.label and r.circuit is not None), None)
                if run is None:
                    rw.add(f"*{v.label}: no run finished training, so there is no circuit to draw.*")
                elif not run.circuit.group("negative").samples:
                    why = ("it was born dead and outputs a constant" if run.born_dead
                           else "all of its predictions are positive")
                    rw.add(f"*{v.label}: seed {run.seed}'s network predicts no sample negative ({why}), "
                           "so there is no negative circuit to draw.*")
                else:
                    draw_circuit(run.circuit, rw.image_path(f"circuit_{file_safe(v.label)}.png",
                                                            f"{v.label} circuit, seed {run.seed}"),
                                 "negative", dpi=CIRCUIT_DPI)
        rw.add("## Scenario", scenario_block(result))
        if scenario_toml:
            rw.add("Built from `--data`; save this as a `.toml` file to rerun it with `--scenario`:",
                   f"```toml\n{scenario_toml}```")
    return rw.path


def _ci(triple: tuple) -> str:
    return "—" if triple[1] is None else f"{triple[1]:.3g}–{triple[2]:.3g}"
