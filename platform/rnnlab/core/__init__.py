"""Core: validated configs, MNIST sequences and the recurrent models. No Optuna, no MLflow,
no printing."""
