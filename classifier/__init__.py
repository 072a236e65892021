"""Facial-expression classifier: FER2013 data, models, training, evaluation and inference."""

# Class index order used everywhere (folder layout of the Kaggle FER2013 release, alphabetical).
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
