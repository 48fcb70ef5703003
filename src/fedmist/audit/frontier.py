"""The privacy-utility frontier: a markdown table, the JSON behind it, and a PNG plot.

The plot has three panels, the job's test accuracy against the best attack's SSIM, the best attack's
accuracy (a clean-image classifier on the reconstructions), and the attacker's accuracy at the victim's
class once the uploaded label is used too (where label randomized response shows), one curve per series with its
epsilons written beside the points; dashed lines mark the baselines an attacker gets for free (the mean
image, chance). :func:`choose_epsilon` applies the issue's target: reconstructions unrecognizable
(SSIM below a threshold, attack accuracy near chance) while the job keeps its accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedmist.atomic import write_json_atomic


def _eps_sort_key(eps: float | str) -> float:
    return float("inf") if eps == "inf" else float(eps)


def choose_epsilon(result: dict[str, Any], *, ssim_below: float = 0.3, chance_margin: float = 0.1,
                   min_accuracy: float = 0.85, series: str = "job") -> dict[str, Any]:
    """The largest epsilon of ``series`` whose attacks fail by the thresholds, and whether accuracy holds."""
    chance = result["baselines"]["chance_accuracy"]
    private = [r for r in result["rows"] if r["series"] == series and r["attack_ssim"] < ssim_below
               and r["attack_accuracy"] <= chance + chance_margin]
    best = max(private, key=lambda r: _eps_sort_key(r["epsilon"]), default=None)
    verdict: dict[str, Any] = {"series": series, "ssim_below": ssim_below,
                               "attack_accuracy_at_most": round(chance + chance_margin, 4),
                               "min_test_accuracy": min_accuracy}
    useful = [r for r in result["rows"] if r["series"] == series and r["test_accuracy"] >= min_accuracy
              and "prototype" in r]
    if useful:  # what the cloud's own classifier leaks wherever the job is useful enough (see audit.prototype)
        floor = min(useful, key=lambda r: r["prototype"]["recon_accuracy"])
        verdict["prototype_floor"] = {"epsilon": floor["epsilon"], "test_accuracy": floor["test_accuracy"],
                                      "ssim": floor["prototype"]["ssim"],
                                      "attack_accuracy": floor["prototype"]["recon_accuracy"]}
    if best is None:
        verdict.update(epsilon=None, satisfied=False,
                       reason=f"no epsilon tried keeps attack SSIM < {ssim_below} and attack accuracy <= "
                              f"{chance + chance_margin:.2f}")
        return verdict
    ok = best["test_accuracy"] >= min_accuracy
    verdict.update(epsilon=best["epsilon"], test_accuracy=best["test_accuracy"], attack_ssim=best["attack_ssim"],
                   attack_accuracy=best["attack_accuracy"], satisfied=ok,
                   reason="" if ok else f"at that epsilon the job's test accuracy is {best['test_accuracy']:.4f} "
                                        f"< {min_accuracy}")
    return verdict


def markdown_table(result: dict[str, Any]) -> str:
    """One row per series and epsilon, then the baselines."""
    head = ("| series | eps/feature | r | eps/sample | capacity bits/sample | test acc | decoder SSIM | decoder PSNR"
            " | decoder acc | likelihood SSIM | likelihood acc | prototype SSIM | prototype acc | label attack acc"
            " | MIA AUC |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in result["rows"]:
        p, d, lk = r["privacy"], r["decoder"], r["likelihood"]
        lines.append(
            f"| {r['series']} | {_num(p['epsilon_per_feature'])} | {p['features_per_sample']} | {_num(p['epsilon_per_sample'])} "
            f"| {p['capacity_bits_per_sample']:.1f} | {r['test_accuracy']:.4f} | {d['ssim']:.3f} | {d['psnr']:.2f} "
            f"| {d['recon_accuracy']:.3f} | {lk['ssim']:.3f} | {lk['recon_accuracy']:.3f} "
            f"| {_attack(r, 'prototype')} | {r['label_attack_accuracy']:.3f} | {r['membership_auc']:.3f} |")
    b = result["baselines"]
    lines += ["", "| baseline | SSIM | PSNR | judge accuracy |", "|---|---|---|---|",
              f"| mean image | {b['mean_image']['ssim']:.3f} | {b['mean_image']['psnr']:.2f} "
              f"| {b['mean_image']['recon_accuracy']:.3f} |",
              f"| decoder on raw float features | {b['raw_float_features_decoder']['ssim']:.3f} "
              f"| {b['raw_float_features_decoder']['psnr']:.2f} | {b['raw_float_features_decoder']['recon_accuracy']:.3f} |",
              f"| clean victim images | 1.000 | inf | {b['judge_clean_accuracy']:.3f} |",
              *([f"| class mean of the true label | {b['class_mean_of_true_label']['ssim']:.3f} "
                 f"| {b['class_mean_of_true_label']['psnr']:.2f} | {b['class_mean_of_true_label']['recon_accuracy']:.3f} |"]
                if "class_mean_of_true_label" in b else []),
              "", f"Chance accuracy {b['chance_accuracy']:.3f}. Bits without flipping = the eps inf rows."]
    return "\n".join(lines) + "\n"


def _attack(row: dict[str, Any], name: str) -> str:
    """``SSIM | accuracy`` of one attack, or dashes for results written before the attack existed."""
    a = row.get(name)
    return f"{a['ssim']:.3f} | {a['recon_accuracy']:.3f}" if a else "- | -"


def _num(x: float | str) -> str:
    return x if isinstance(x, str) else f"{x:g}"


def plot_frontier(result: dict[str, Any], path: Path) -> Path:
    """Write the three-panel frontier PNG (matplotlib, Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), sharey=True)
    b = result["baselines"]
    panels = (("attack_ssim", "best attack SSIM (lower = more private)", b["mean_image"]["ssim"], "mean image"),
              ("attack_accuracy", "classifier accuracy on best reconstructions", b["chance_accuracy"], "chance"),
              ("label_attack_accuracy", "attacker's accuracy at the class (reconstruction + uploaded label)",
               b["chance_accuracy"], "chance"))
    for ax, (key, label, base, base_name) in zip(axes, panels):
        for name in dict.fromkeys(r["series"] for r in result["rows"]):
            rows = sorted((r for r in result["rows"] if r["series"] == name), key=lambda r: _eps_sort_key(r["epsilon"]))
            xs, ys = [r[key] for r in rows], [r["test_accuracy"] for r in rows]
            ax.plot(xs, ys, marker="o", label=name)
            for r, x, y in zip(rows, xs, ys):
                ax.annotate(f"ε={_num(r['epsilon'])}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.axvline(base, linestyle="--", color="grey", linewidth=1)
        ax.text(base, ax.get_ylim()[0], f" {base_name}", fontsize=7, color="grey", va="bottom")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("job test accuracy")
    axes[0].legend(fontsize=8)
    fig.suptitle("fedmist audit: privacy-utility frontier (up and left is better)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_frontier(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write ``frontier.md``, ``frontier.json`` and ``frontier.png`` into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"table": out_dir / "frontier.md", "json": out_dir / "frontier.json", "plot": out_dir / "frontier.png"}
    verdict = result.get("choice")
    text = markdown_table(result)
    if verdict is not None:
        text += "\n" + _verdict_text(verdict) + "\n"
    paths["table"].write_text(text)
    write_json_atomic(paths["json"], result)
    plot_frontier(result, paths["plot"])
    return paths


def _verdict_text(v: dict[str, Any]) -> str:
    floor = v.get("prototype_floor")
    why = ""
    if floor is not None:
        why = (f" Wherever the job's test accuracy is >= {v['min_test_accuracy']}, the class-prototype attack (the "
               f"cloud's own classifier picks the class, the attacker shows that class's mean public image) "
               f"already reaches SSIM {floor['ssim']:.3f} and attack accuracy {floor['attack_accuracy']:.3f} "
               f"(eps {floor['epsilon']}, test accuracy {floor['test_accuracy']:.4f}): a channel useful enough to "
               f"classify leaks the class, so attack accuracy near chance needs test accuracy near chance.")
    if v["epsilon"] is None:
        return f"Target not met: {v['reason']}.{why}"
    head = (f"Largest epsilon with attack SSIM < {v['ssim_below']} and attack accuracy <= "
            f"{v['attack_accuracy_at_most']}: {v['epsilon']} (test accuracy {v['test_accuracy']:.4f})")
    return head + ("; meets the accuracy target." if v["satisfied"] else f"; target not met: {v['reason']}.{why}")
