"""Machine learning: the numpy core (`nn/`), datasets, training, saved model artifacts, predictions.

Nothing here knows about images, clusters or Terraform."""
