"""CNN image classification: the Question 2 networks of both homework years.

- `create_model(name, input_shape, num_classes, **options)`, `MODELS`, `register_model`, `count_parameters`
  (models.py): `cnn2023` (2023-24) and `cnn2024` (2024-25, `bn_gap=True` for BN + global average pooling).
- `VisionConfig`, `PRESETS`, `preset_config` (config.py, experiment.py): the homework's settings.
- `train_run`, `run_sweep`, `load_data` (experiment.py): one run, or a learning-rate / ablation sweep.
- `layer_table` (analysis.py): parameters per layer, the numbers behind Q2.3 and Q2.4.
"""

from dllab.lazy import lazy_exports

# Exports load lazily (PEP 562), so `dllab --help` can import dllab.vision.cli without importing torch.
_EXPORTS = {
    "MODELS": "models",
    "count_parameters": "models",
    "create_model": "models",
    "register_model": "models",
    "PRESETS": "config",
    "VisionConfig": "config",
    "load_data": "experiment",
    "preset_config": "experiment",
    "run_sweep": "experiment",
    "train_run": "experiment",
    "layer_table": "analysis",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
