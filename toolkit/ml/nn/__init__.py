"""A small numpy neural-network core: explicit forward/backward layers (`layers`), losses,
fused optimizers, a deterministic mini-batch training loop (`training`) and classification
metrics. Import from the submodules: inference needs `model` and `layers` only, so serving
never loads the training loop or the optimizers."""
