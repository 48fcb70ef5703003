"""The attacks work (bits without flipping are invertible) and the channel works (tiny epsilon defeats them)."""

from __future__ import annotations

import math

import torch

from fedmist.audit import channel_data as ch
from fedmist.audit.decoder import DecoderConfig, reconstruct, train_decoder
from fedmist.audit.likelihood import LikelihoodConfig, activation_scale, likelihood_attack
from fedmist.audit.metrics import ssim
from fedmist.data.tensors import images_to_tensor


def _decoder_ssim(world, eps: float) -> tuple[float, float]:
    edge = world["edge"]
    aux_images, _ = world["aux"]
    vic_images, _ = world["victims"]
    aux, victims = images_to_tensor(aux_images), images_to_tensor(vic_images)
    noise = ch.FreshNoise(eps, seed=1)
    dec = train_decoder(ch.clean_bits(edge, aux_images), aux, ch.feature_shape(edge, aux_images),
                        lambda b: noise(b).to(torch.float32), DecoderConfig(epochs=3, seed=0))
    recon = reconstruct(dec, ch.uploads(edge, vic_images, eps, seed=2).to(torch.float32))
    baseline = ssim(aux.mean(0, keepdim=True).expand_as(victims), victims)
    return ssim(recon, victims), baseline


def test_decoder_inverts_unflipped_bits(audit_world) -> None:
    attack, baseline = _decoder_ssim(audit_world, math.inf)
    assert attack > baseline + 0.25, (attack, baseline)
    assert attack > 0.55, attack


def test_decoder_falls_to_mean_image_at_tiny_epsilon(audit_world) -> None:
    attack, baseline = _decoder_ssim(audit_world, 0.05)
    assert attack < baseline + 0.05, (attack, baseline)


def test_likelihood_attack_beats_prior_without_noise_and_not_with_it(audit_world) -> None:
    edge = audit_world["edge"]
    aux_images, _ = audit_world["aux"]
    vic_images, _ = audit_world["victims"]
    aux, victims = images_to_tensor(aux_images), images_to_tensor(vic_images[:100])
    mean = aux.mean(0)
    temp = 0.1 * activation_scale(edge, aux[:500])
    cfg = LikelihoodConfig(steps=100)
    baseline = ssim(mean.expand_as(victims), victims)
    clear = likelihood_attack(edge, ch.uploads(edge, vic_images[:100], math.inf, seed=3), math.inf, mean, temp, cfg)
    noisy = likelihood_attack(edge, ch.uploads(edge, vic_images[:100], 0.05, seed=3), 0.05, mean, temp, cfg)
    assert ssim(clear, victims) > baseline + 0.2
    assert ssim(noisy, victims) < baseline + 0.05
