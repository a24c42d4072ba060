"""``python -m adaptlab``: the command line (``cli.py``), for ``accelerate launch -m adaptlab`` too."""

from .cli import main

raise SystemExit(main())
