"""Figures and tables of a sweep's results DataFrame (the collected Parquet store), never of the
trainer: curves with bootstrap bands over seeds, VCT Fig. 3 gradient variance, final metrics and
paired differences per arm, paper-style tables, Optuna parameter importance, the early-stopping audit
(ablate.figures.audit), and ``make_report``."""
from ablate.figures.audit import (evaluation_curves, rank_agreement, replay_asha,
                                  smallest_safe_grace)
from ablate.figures.frame import (arm_order, bootstrap_mean_ci, ema, final_values, load_results,
                                  main_metric, metrics_present, swept_keys, trial_outcomes)
from ablate.figures.importance import param_importances, plot_importances, study_from_results
from ablate.figures.plots import (curve_summary, paired_differences, plot_curves, plot_final,
                                  plot_grad_variance, plot_paired_differences, save_figure)
from ablate.figures.report import make_report
from ablate.figures.tables import final_table, paper_table

__all__ = [
    "arm_order", "bootstrap_mean_ci", "curve_summary", "ema", "evaluation_curves", "final_table",
    "final_values", "rank_agreement", "replay_asha", "smallest_safe_grace",
    "load_results", "main_metric", "make_report", "metrics_present", "paired_differences",
    "paper_table", "param_importances", "plot_curves", "plot_final", "plot_grad_variance",
    "plot_importances", "plot_paired_differences", "save_figure", "study_from_results",
    "swept_keys", "trial_outcomes",
]
