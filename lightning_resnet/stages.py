"""The three parts of a data set, which are also the stages metrics are logged under (``val/acc``)."""

TRAIN, VAL, TEST = "train", "val", "test"
PARTS = (TRAIN, VAL, TEST)
