"""Using a trained model: temperature scaling (``calibration``), export with the preprocessing inside
(``export``) and the exported model run with onnxruntime (``onnx``). Test-time augmentation is in
:mod:`lightning_resnet.training.tta`, since the module's evaluation step applies it."""
