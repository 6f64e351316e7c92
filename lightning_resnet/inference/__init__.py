"""Using a trained model: temperature scaling and the unsure threshold at the end of ``fit`` (``calibration``), what
a model says of one image (``verdict``), export with the preprocessing inside (``export``), and the trained model
as ``serve``, ``demo`` and ``predict_onnx`` run it (``shipped``: a checkpoint in torch, or an exported ``.onnx``
with onnxruntime, ``onnx``). Test-time augmentation is in :mod:`lightning_resnet.training.tta`, since the module's
evaluation step applies it."""
