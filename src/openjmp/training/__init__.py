"""Training: losses, normalisation, EMA, optimisers and schedules, pre-training and fine-tuning."""
