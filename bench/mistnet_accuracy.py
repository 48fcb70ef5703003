"""MistNet accuracy/speed benchmark on Fashion-MNIST, in one process (no network).

public 10k (pretraining) | edges 2 x 25k (extracted through the channel) | test 10k (channel, no flipping);
LeNet-5, cut_layer 3, cloud trained for 6 epochs (batch 256, peak lr 0.2: the job's recipe). Prints one row per epsilon.

    .venv/bin/python bench/mistnet_accuracy.py                       # the acceptance table
    .venv/bin/python bench/mistnet_accuracy.py --pretrain-epsilon none --pretrain-epochs 5 --no-debias  # old recipe
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch

from fedmist.data.idx import load_idx_dataset
from fedmist.models.cloud_train import InMemoryPackedSource, evaluate_cloud, train_cloud
from fedmist.models.extract import channel_features, extract_bits
from fedmist.models.pretrain import pretrain
from fedmist.models.registry import build_model
from fedmist.models.split import split_model


def pretrain_epsilon(setting: str, job_eps: float) -> float | None:
    """Channel epsilon for pretraining: ``none`` = plain, ``job`` = each row's epsilon, else that number."""
    named: dict[str, float | None] = {"none": None, "job": job_eps}
    return named[setting] if setting in named else float(setting)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--eps", default="inf,2,1", help="comma-separated epsilons")
    ap.add_argument("--pretrain-epsilon", default="1",
                    help="channel-aware pretraining at this epsilon (a number or inf); 'job' = each row's "
                         "epsilon; 'none' = plain pretraining")
    ap.add_argument("--pretrain-epochs", type=int, default=15)
    ap.add_argument("--temperature", type=float, default=0.25, help="surrogate-gradient temperature (channel-aware)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--max-lr", type=float, default=0.2, help="cloud training peak learning rate")
    ap.add_argument("--pretrain-max-lr", type=float, default=0.05, help="pretraining peak learning rate")
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--augment", default="none")
    ap.add_argument("--no-debias", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    images, labels = load_idx_dataset(f"{args.data}/train")
    test_x, test_y = load_idx_dataset(f"{args.data}/t10k")
    order = np.random.default_rng(args.seed).permutation(len(images))
    public, edges = order[:10_000], [order[10_000:35_000], order[35_000:60_000]]
    debias = not args.no_debias
    cut = 3
    pretrained: dict[float | None, tuple[dict[str, torch.Tensor], float]] = {}
    print(f"pretrain epsilon={args.pretrain_epsilon} ({args.pretrain_epochs} epochs) debias={debias} "
          f"augment={args.augment} max_lr={args.max_lr} wd={args.weight_decay} cloud epochs={args.epochs} "
          f"threads={args.threads}")
    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes on the same cores inflate the times)")
    print(f"{'epsilon':>8} {'test_acc':>9} {'pretrain_s':>11} {'extract_s/25k':>14} {'cloud_train_s':>14} "
          f"{'cloud_cpu_s':>12}")
    for eps in (float(e) for e in args.eps.split(",")):
        channel_eps = pretrain_epsilon(args.pretrain_epsilon, eps)
        if channel_eps not in pretrained:
            t0 = time.perf_counter()
            sd = pretrain(images[public], labels[public], epochs=args.pretrain_epochs, max_lr=args.pretrain_max_lr,
                          seed=args.seed, cut_layer=None if channel_eps is None else cut,
                          channel_epsilon=math.inf if channel_eps is None else channel_eps,
                          debias=debias, temperature=args.temperature, threads=args.threads)
            pretrained[channel_eps] = (sd, time.perf_counter() - t0)
        sd, pretrain_s = pretrained[channel_eps]
        model = build_model("lenet5")
        model.load_state_dict(sd)
        edge, cloud = split_model(model, cut)
        packed, shape, extract_s = [], None, []
        for i, part in enumerate(edges):
            t0 = time.perf_counter()
            bits, shape = extract_bits(edge, images[part], eps, seed=args.seed + i)
            extract_s.append(time.perf_counter() - t0)
            packed.append(bits)
        source = InMemoryPackedSource(np.concatenate(packed), np.concatenate([labels[p] for p in edges]), shape)
        cpu0 = time.process_time()
        result = train_cloud(cloud, source, epochs=args.epochs, batch_size=args.batch_size, max_lr=args.max_lr,
                             weight_decay=args.weight_decay, epsilon=eps, debias=debias, augment=args.augment,
                             seed=args.seed)
        cloud_cpu_s = time.process_time() - cpu0
        test = evaluate_cloud(cloud, channel_features(edge, test_x), test_y, shape, eps, debias)
        print(f"{eps:>8g} {test['accuracy']:>9.4f} {pretrain_s:>11.1f} {np.mean(extract_s):>14.2f} "
              f"{result['seconds']:>14.1f} {cloud_cpu_s:>12.1f}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
