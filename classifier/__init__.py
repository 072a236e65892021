"""Facial-expression classifier: FER2013 data, models, training, evaluation and inference.

``build_classifier(settings.classifier)`` gives the model named by ``classifier.weights``.
"""
