"""``python -m mlcore`` is the ``mlcore`` command."""
from .cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
