"""Measured privacy for MistNet: attack the bits edges upload and report the privacy-utility frontier.

Modules, one job each: :mod:`metrics` (SSIM, PSNR, AUC), :mod:`channel_data` (victim uploads and fresh
channel noise for the attacker), :mod:`decoder` (learned inversion), :mod:`likelihood` (white-box
inversion through the channel model), :mod:`membership` (loss-threshold membership inference),
:mod:`utility` (the job's own accuracy per epsilon), :mod:`narrow` (a narrower cut), :mod:`frontier`
(table, JSON, plot) and :mod:`runner` (``fedmist audit``).
"""
