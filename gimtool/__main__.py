"""`python -m gimtool` (also what `torchrun -m gimtool train ...` runs)."""

from gimtool.cli import main

if __name__ == "__main__":
    main()
