"""``python -m seamline`` is the ``seamline`` command."""

from seamline.cli.main import app

app()
