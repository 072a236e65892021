"""The bottom floor: the types that move between stages, their protocols, the settings, and small shared helpers.

Nothing here imports any other DeepFER package; everything else may import this.
"""
