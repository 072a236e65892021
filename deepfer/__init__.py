"""The entry points: the ``deepfer`` command line (``deepfer.cli``). Run it as ``deepfer`` or ``python -m deepfer``."""
