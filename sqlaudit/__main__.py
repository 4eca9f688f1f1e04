"""``python -m sqlaudit``: the command line (see :mod:`sqlaudit.cli`)."""

from .cli import main

if __name__ == "__main__":
    main()
