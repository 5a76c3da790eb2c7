"""orchestrator: YAML studies of vared_core on Ray Tune + Optuna, tracked in MLflow."""
