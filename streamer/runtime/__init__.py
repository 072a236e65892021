"""Where cameras run: a floor above the rest of ``streamer`` and below ``dashboard``.

``runner.CameraRunner`` is the interface (``local.LocalRunner``: this process's pipeline; ``ray_runner.ClusterRunner``:
workers on a Ray cluster, ``ray_worker.CameraWorker``, placed by ``placement``, joined through ``ray_connect``).
``camera_store`` keeps the configured cameras in Redis. Nothing else in ``streamer`` imports this package.
"""
