"""Entry point for ``python -m photoctl``."""

from photoctl.cli import main

if __name__ == "__main__":
    main()
