"""Model providers and the model-name registry."""
