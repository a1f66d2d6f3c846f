"""The final model: ``artifacts`` (weights kept while a study runs), ``export`` (best trial ->
bundle folder), ``card`` (model card), ``onnx`` (checked ONNX export) and ``predict`` (bundle ->
predictions, with training's preprocessing)."""
