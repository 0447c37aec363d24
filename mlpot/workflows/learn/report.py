"""The records and outputs of ``mlpot learn``: one record per iteration (counts of accurate /
candidate / failed frames per exploration run and in all, the deviation histogram, labels done and
failed, the members' training RMSEs, the force RMSE of member 0 on the new labels), written to
``results.json`` and ``iterations.csv``; plots ``accurate_fraction.png`` (accurate fraction per
iteration, the target line) and ``deviation_hist.png`` (ε_F,max histograms per iteration, the
trust levels). Every file is written to a temporary name, then renamed."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from mlpot.atomic_io import atomic_path
from mlpot.plot import save_figure

UNITS = {"max_devi_f": "eV/A", "f_trust": "eV/A", "rmse_e": "eV/atom", "rmse_f": "eV/A", "T": "K", "P": "bar"}


def iteration_record(cfg: Any, it: int, stage: int, members: dict[str, dict], sel: dict[str, Any],
                     labels: list[dict[str, Any]], wf: Any, rmse_new: Optional[float]) -> dict[str, Any]:
    """The record of one iteration (module docstring)."""
    from mlpot.workflows.learn.select import histogram

    c = sel["counts"]
    n = max(1, int(c["n_frames"]))
    lo, hi = cfg.trust(stage)
    failed_labels = [{"index": lab["index"], **sel["picked"][lab["index"]], "error": lab.get("error")}
                     for lab in labels if not lab["ok"]]
    train = []
    for name, r in members.items():
        last = r.get("lcurve_last", {})
        train.append({"task": name, "frames": r.get("frames"), "seed": r.get("seed"), "init_model": r.get("init_model"),
                      "data_rmse_f": r.get("data_rmse_f"), "data_rmse_e_per_atom": r.get("data_rmse_e_per_atom"),
                      **{k: v for k, v in last.items() if k.startswith("rmse")}})
    return {
        "iteration": it, "stage": stage, "n_frames": int(c["n_frames"]),
        "accurate": int(c["accurate"]), "candidate": int(c["candidate"]), "failed": int(c["failed"]),
        "accurate_fraction": c["accurate"] / n if c["n_frames"] else 0.0,
        "candidate_fraction": c["candidate"] / n if c["n_frames"] else 0.0,
        "failed_fraction": c["failed"] / n if c["n_frames"] else 0.0,
        "runs": sel["runs"], "picked": len(sel["picked"]),
        "labelled": sum(1 for lab in labels if lab["ok"]), "label_failed": failed_labels,
        "training_frames": int(next(iter(members.values())).get("frames", 0)) if members else 0,
        "train": train, "rmse_f_new_labels": rmse_new,
        "f_trust_lo": lo, "f_trust_hi": hi,
        "max_devi_f_histogram": histogram(sel["max_devi_f"], lo, hi),
        "max_devi_f_max": float(np.max(sel["max_devi_f"])) if sel["max_devi_f"] else None,
        "max_devi_f_median": float(np.median(sel["max_devi_f"])) if sel["max_devi_f"] else None,
        "tasks_reused": len(getattr(wf, "reused", ())),
    }


def summary_line(rec: dict[str, Any]) -> str:
    """One line per iteration on stdout."""
    s = (f"iteration {rec['iteration']} (stage {rec['stage']}): {rec['n_frames']} frames, "
         f"accurate {100 * rec['accurate_fraction']:.1f} %, candidate {100 * rec['candidate_fraction']:.1f} %, "
         f"failed {100 * rec['failed_fraction']:.1f} %; labelled {rec['labelled']}/{rec['picked']}"
         f" (trained on {rec['training_frames']} frames)")
    if rec["label_failed"]:
        s += f", {len(rec['label_failed'])} label(s) failed"
    for r in rec.get("retrained", ()):
        s += (f"; member {r['member']} retrained (training-data force RMSE {r['data_rmse_f']:.3f} vs median "
              f"{r['median_others']:.3f} eV/Å of the others; new {r['data_rmse_f_new']:.3f})")
    if rec.get("rmse_f_new_labels") is not None:
        s += f"; force RMSE of member 0 on the new labels {rec['rmse_f_new_labels']:.4f} eV/Å"
    return s


def final_line(data: dict[str, Any]) -> str:
    recs = data["iterations"]
    total = data["labels_total"]
    word = {"converged": "converged", "max_iterations": "NOT converged (max_iterations reached)",
            "stage_max_iterations": "NOT converged (the last stage's max_iterations reached)"}.get(data["status"],
                                                                                                 data["status"])
    return (f"mlpot learn: {word} after {len(recs)} iteration(s), {total} labels in all; "
            f"final models in {Path(data['output_dir']) / 'models'}")


def write_outputs(cfg: Any, out: Path, records: list[dict[str, Any]], status: str,
                  final_models: list[str]) -> dict[str, Any]:
    """results.json, iterations.csv and the plots; returns the results dict."""
    data = {
        "units": UNITS, "status": status, "output_dir": str(out), "f_trust_lo": cfg.f_trust_lo,
        "f_trust_hi": cfg.f_trust_hi, "accurate_target": cfg.accurate_target,
        "labels_total": int(sum(r["labelled"] for r in records)),
        "label_failures_total": int(sum(len(r["label_failed"]) for r in records)),
        "final_models": final_models, "iterations": records,
        "input": json.loads(cfg.model_dump_json(exclude={"cluster"})),
    }
    with atomic_path(out / "results.json") as tmp:
        Path(tmp).write_text(json.dumps(data, indent=1, default=float))
    cols = ["iteration", "stage", "n_frames", "accurate", "candidate", "failed", "accurate_fraction", "picked",
            "labelled", "training_frames", "rmse_f_new_labels", "max_devi_f_median", "max_devi_f_max", "f_trust_lo", "f_trust_hi"]
    per_a = ("rmse_f_new_labels", "max_devi_f_median", "max_devi_f_max", "f_trust_lo", "f_trust_hi")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([c + ("_eV_per_A" if c in per_a else "")
                for c in cols] + ["label_failed", "members_retrained"])
    for r in records:
        w.writerow([r.get(c, "") if r.get(c) is not None else "" for c in cols] + [len(r["label_failed"])]
                   + [len(r.get("retrained", ()))])
    with atomic_path(out / "iterations.csv") as tmp:
        Path(tmp).write_text(buf.getvalue())
    if records:
        try:
            plot_accurate_fraction(data, out)
            plot_histograms(data, out)
        except ImportError:  # matplotlib missing: the numbers are written anyway
            pass
    return data


def plot_accurate_fraction(data: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = data["iterations"]
    fig, ax = plt.subplots(figsize=(6, 4))
    it = [r["iteration"] for r in recs]
    for key, style in (("accurate_fraction", "o-"), ("candidate_fraction", "s--"), ("failed_fraction", "x:")):
        ax.plot(it, [100 * r[key] for r in recs], style, label=key.split("_")[0])
    ax.axhline(100 * data["accurate_target"], color="k", lw=0.8, ls="--", label="target")
    for r in recs:
        ax.annotate(f"s{r['stage']}", (r["iteration"], 100 * r["accurate_fraction"]), textcoords="offset points",
                    xytext=(3, 4), fontsize=7)
    ax.set_xlabel("iteration")
    ax.set_ylabel("frames (%)")
    ax.set_ylim(-2, 102)
    ax.set_title("exploration frames by max force deviation (s: stage)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "accurate_fraction.png"
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_histograms(data: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in data["iterations"]:
        h = r["max_devi_f_histogram"]
        edges = np.asarray(h["edges"])
        counts = np.asarray(h["counts"], float)
        frac = counts / max(1.0, counts.sum())
        ax.stairs(frac, edges, label=f"iteration {r['iteration']}")
    levels = sorted({(r.get("f_trust_lo", data["f_trust_lo"]), r.get("f_trust_hi", data["f_trust_hi"]))
                     for r in data["iterations"]})  # per stage where stages set their own
    for k, (lo, hi) in enumerate(levels):
        tag = "" if len(levels) == 1 else f" {lo:g}/{hi:g}"
        ax.axvline(lo, color="g", ls=("--", ":", "-.")[k % 3], lw=0.8, label="f_trust_lo" + tag)
        ax.axvline(hi, color="r", ls=("--", ":", "-.")[k % 3], lw=0.8, label="f_trust_hi" + tag)
    ax.set_xscale("log")
    ax.set_xlabel("max force deviation ε_F,max (eV/Å)")
    ax.set_ylabel("fraction of frames")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "deviation_hist.png"
    save_figure(fig, path)
    plt.close(fig)
    return path


__all__ = ["iteration_record", "write_outputs", "summary_line", "final_line", "plot_accurate_fraction",
           "plot_histograms"]
