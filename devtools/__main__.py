"""`python -m devtools`: see `devtools.cli`."""

from devtools.cli import app

app()
