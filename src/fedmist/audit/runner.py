"""``fedmist audit``: run every attack at every epsilon, add the job's accuracy, write the frontier.

Per epsilon (and per series: the job as configured, a narrower cut, labels through k-ary randomized
response) it measures the decoder attack, the likelihood attack and the class-prototype attack
(:mod:`fedmist.audit.prototype`) on the victims' uploads, the job's
test accuracy from an in-process cloud training run, and membership inference on that trained model;
baselines (mean image, decoder on raw float features, bits without flipping = eps inf) come once.
Sizes are chosen for speed on two cores: the victims and likelihood targets are subsamples, decoders are
small and train for a few epochs (each knob is in :class:`AuditConfig`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from fedmist.audit import channel_data as ch
from fedmist.audit.decoder import DecoderConfig, reconstruct, train_decoder
from fedmist.audit.job_data import AuditData
from fedmist.audit.judge import judge_probs, label_attack_accuracy, score, train_judge
from fedmist.audit.likelihood import LikelihoodConfig, activation_scale, likelihood_attack
from fedmist.audit.membership import membership_auc, per_sample_loss
from fedmist.audit.narrow import narrow_cut
from fedmist.audit.prototype import class_means, predict_uploads, prototype_reconstructions
from fedmist.audit.utility import UtilityConfig, job_accuracy, uploaded_labels
from fedmist.data.tensors import images_to_tensor
from fedmist.privacy.accounting import privacy_report

Log = Callable[[str], None]


@dataclass
class AuditConfig:
    epsilons: list[float]
    victims: int = 1000
    likelihood_victims: int = 200
    members: int = 2000
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    likelihood: LikelihoodConfig = field(default_factory=LikelihoodConfig)
    temperature: float = 0.1
    judge_epochs: int = 3
    utility_epochs: int | None = None
    narrow_channels: int = 0
    label_epsilon: float | None = None
    threads: int = 2
    seed: int = 0


@dataclass
class _Series:
    """One curve on the frontier: an edge/cloud pair and the label channel its utility runs use."""

    name: str
    edge: nn.Module
    cloud: nn.Module
    label_epsilon: float | None
    attacks_from: str | None = None  # reuse another series' attack results (same image channel)


class _Auditor:
    def __init__(self, data: AuditData, config: AuditConfig, log: Log) -> None:
        self.data, self.config, self.log = data, config, log
        rng = np.random.default_rng(config.seed)
        n_edge = len(data.edge_images)
        self.victim_idx = np.sort(rng.choice(n_edge, min(config.victims, n_edge), replace=False))
        self.member_idx = np.sort(rng.choice(n_edge, min(config.members, n_edge), replace=False))
        self.nonmember_idx = np.sort(rng.choice(len(data.test_images), min(config.members, len(data.test_images)),
                                                replace=False))
        self.victims = images_to_tensor(data.edge_images[self.victim_idx])
        self.victim_labels = torch.as_tensor(data.edge_labels[self.victim_idx])
        self.aux = images_to_tensor(data.aux_images)
        self.mean_image = self.aux.mean(0, keepdim=True)
        self.num_classes = int(max(data.aux_labels.max(), data.edge_labels.max()) + 1)
        self.class_means = class_means(self.aux, data.aux_labels, self.num_classes)
        self.utility = UtilityConfig(epochs=config.utility_epochs or data.epochs, batch_size=data.batch_size,
                                     learning_rate=data.learning_rate, debias=data.debias, seed=config.seed)
        self.judge: nn.Module | None = None
        self.timings: list[dict[str, Any]] = []
        self.attacks: dict[tuple[str, float], dict[str, Any]] = {}
        self.last_decoder: dict[str, Any] = {}  # per series: the decoder of the previous (larger) epsilon

    def timed(self, what: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
        self.timings.append({"stage": what, "seconds": round(seconds, 2)})
        self.log(f"audit: {what} ({seconds:.1f} s)")
        return out

    # ---- baselines -------------------------------------------------------------------------------------
    def baselines(self) -> dict[str, Any]:
        cfg, data = self.config, self.data
        self.judge = self.timed("judge classifier trained on clean auxiliary images",
                                lambda: train_judge(data.aux_images, data.aux_labels, data.model_name,
                                                    cfg.judge_epochs, cfg.threads))
        clean = judge_probs(self.judge, self.victims)
        mean = score(self.mean_image.expand_as(self.victims), self.victims, self.judge, self.victim_labels)
        shape = ch.feature_shape(data.edge, data.aux_images)
        aux_f = ch.float_features(data.edge, data.aux_images)
        scale = aux_f.std().clamp_min(1e-6)
        dec = self.timed("decoder on raw float features", lambda: train_decoder(
            aux_f, self.aux, shape, lambda f: f / scale, cfg.decoder))
        raw = score(reconstruct(dec, ch.float_features(data.edge, data.edge_images[self.victim_idx]) / scale),
                    self.victims, self.judge, self.victim_labels)
        chance = 1.0 / self.num_classes
        true_class = score(prototype_reconstructions(self.class_means, self.victim_labels), self.victims, self.judge,
                           self.victim_labels)
        return {"mean_image": mean, "raw_float_features_decoder": raw, "chance_accuracy": chance,
                "class_mean_of_true_label": true_class,
                "judge_clean_accuracy": float((clean.argmax(1) == self.victim_labels).to(torch.float64).mean())}

    # ---- one epsilon of one series --------------------------------------------------------------------
    def attack(self, series: _Series, eps: float) -> dict[str, Any]:
        cfg, data = self.config, self.data
        edge = series.edge
        shape = ch.feature_shape(edge, data.aux_images)
        aux_bits = ch.clean_bits(edge, data.aux_images)
        noise = ch.FreshNoise(eps, cfg.seed + 7)
        observed = ch.uploads(edge, data.edge_images[self.victim_idx], eps, seed=cfg.seed + 11)
        dec = self.timed(f"[{series.name} eps {eps:g}] decoder attack", lambda: train_decoder(
            aux_bits, self.aux, shape, lambda b: noise(b).to(torch.float32), cfg.decoder,
            init=self.last_decoder.get(series.name)))
        self.last_decoder[series.name] = dec
        recon = reconstruct(dec, observed.to(torch.float32))
        out = {"decoder": score(recon, self.victims, self.judge, self.victim_labels)}
        out["decoder_probs"] = judge_probs(self.judge, recon)
        n = min(cfg.likelihood_victims, len(observed))
        temperature = cfg.temperature * activation_scale(edge, self.aux[:1000])
        lik = self.timed(f"[{series.name} eps {eps:g}] likelihood attack on {n} victims", lambda: likelihood_attack(
            edge, observed[:n], eps, self.mean_image[0], temperature, cfg.likelihood))
        out["likelihood"] = score(lik, self.victims[:n], self.judge, self.victim_labels[:n])
        out["features_per_sample"] = int(math.prod(shape))
        out["shape"] = shape
        out["observed"] = observed
        return out

    def row(self, series: _Series, eps: float) -> dict[str, Any]:
        cfg, data = self.config, self.data
        key = (series.attacks_from or series.name, eps)
        if key not in self.attacks:
            self.attacks[key] = self.attack(series, eps)
        att = self.attacks[key]
        util = self.timed(f"[{series.name} eps {eps:g}] job accuracy (cloud training, {self.utility.epochs} epochs)",
                          lambda: job_accuracy(series.edge, series.cloud, data.edge_images, data.edge_labels,
                                               data.test_images, data.test_labels, eps, series.label_epsilon,
                                               self.utility))
        members = per_sample_loss(series.edge, util.cloud, data.edge_images[self.member_idx],
                                  data.edge_labels[self.member_idx], att["shape"], eps, data.debias)
        others = per_sample_loss(series.edge, util.cloud, data.test_images[self.nonmember_idx],
                                 data.test_labels[self.nonmember_idx], att["shape"], eps, data.debias)
        k = att["decoder_probs"].shape[1]
        uploaded = torch.as_tensor(uploaded_labels(data.edge_labels[self.victim_idx], k, series.label_epsilon,
                                                   cfg.seed + 13))
        label_acc = label_attack_accuracy(att["decoder_probs"], uploaded, self.victim_labels, series.label_epsilon)
        privacy = privacy_report(eps, att["features_per_sample"], series.label_epsilon, num_classes=k)
        predicted = predict_uploads(util.cloud, att["observed"], att["shape"], eps, data.debias)
        proto = score(prototype_reconstructions(self.class_means, predicted), self.victims, self.judge,
                      self.victim_labels)
        attacks = (att["decoder"], att["likelihood"], proto)
        return {
            "series": series.name, "epsilon": privacy["epsilon_per_feature"], "test_accuracy": util.test_accuracy,
            "decoder": att["decoder"], "likelihood": att["likelihood"], "prototype": proto,
            "attack_ssim": max(a["ssim"] for a in attacks),
            "attack_accuracy": max(a["recon_accuracy"] for a in attacks),
            "label_attack_accuracy": label_acc, "membership_auc": membership_auc(members, others),
            "privacy": privacy, "cloud_train_s": round(util.train_s, 2),
        }


def _series(data: AuditData, config: AuditConfig, log: Log) -> list[_Series]:
    out = [_Series("job", data.edge, data.cloud, None)]
    if config.label_epsilon is not None:
        out.append(_Series(f"label_eps={config.label_epsilon:g}", data.edge, data.cloud, config.label_epsilon,
                           attacks_from="job"))
    if config.narrow_channels:
        t0 = time.perf_counter()
        edge, cloud = narrow_cut(data.edge, data.cloud, config.narrow_channels, data.aux_images, data.aux_labels,
                                 seed=config.seed)
        log(f"audit: narrow cut ({config.narrow_channels} channels) trained on public data "
            f"({time.perf_counter() - t0:.1f} s)")
        out.append(_Series(f"narrow_{config.narrow_channels}ch", edge, cloud, None))
    return out


def run_audit(data: AuditData, config: AuditConfig, log: Log = print) -> dict[str, Any]:
    """Run the audit; return the JSON-ready result (baselines, rows per series and epsilon, timing)."""
    torch.set_num_threads(max(1, config.threads))
    started = time.perf_counter()
    auditor = _Auditor(data, config, log)
    baselines = auditor.baselines()
    rows = []
    for series in _series(data, config, log):
        for eps in sorted(config.epsilons, reverse=True):  # largest first: decoders warm-start downwards
            rows.append(auditor.row(series, eps))
            r = rows[-1]
            log(f"audit: [{series.name} eps {eps:g}] test acc {r['test_accuracy']:.4f}, attack SSIM "
                f"{r['attack_ssim']:.3f}, attack acc {r['attack_accuracy']:.3f}, MIA AUC {r['membership_auc']:.3f}")
    return {
        "job_epsilon": privacy_report(data.job_epsilon, 1)["epsilon_per_feature"],
        "cut_layer": data.cut, "victims": len(auditor.victim_idx),
        "likelihood_victims": min(config.likelihood_victims, len(auditor.victim_idx)),
        "members": len(auditor.member_idx), "utility_epochs": auditor.utility.epochs,
        "baselines": baselines, "rows": rows, "wall_s": round(time.perf_counter() - started, 1),
        "timings": auditor.timings,
    }
