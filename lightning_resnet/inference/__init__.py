"""Using a trained model after ``fit``: its decision fitted at the end of ``fit`` (``calibration``), export with the
preprocessing inside (``export``, and ``quantization`` for INT8), and which unlabelled images to label next
(``suggestions``). The model itself is a bundle (:mod:`lightning_resnet.bundle`), run by a predictor of its runtime
(:mod:`lightning_resnet.runtimes`). Test-time augmentation is in :mod:`lightning_resnet.training.tta`, since the
module's evaluation step applies it."""
