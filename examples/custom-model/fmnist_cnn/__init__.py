"""A user package for fedmist: a small CNN on 32x32 RGB images, a PNG-folder loader, a trainer and a strategy.

Nothing here is part of fedmist; fedmist finds these by import path (``fmnist_cnn.model:small_cnn`` ...).
"""
