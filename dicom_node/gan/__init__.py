"""Alpha-GAN and BiGAN networks, training, statistics and calibration (pure torch, no I/O)."""
