"""The commands of the ``deepfer`` command line, one typer app per concern; ``deepfer.cli`` joins them."""
