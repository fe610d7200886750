"""``python -m assetry``: the same command line as the ``assetry`` script."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="assetry")
