"""``python -m mmsearch.recipes.train_derived CONFIG.yaml [key=value ...] [--fresh]``: one training in this process."""
import sys

from mmsearch.recipes.train_derived.recipe import main

if __name__ == "__main__":
    sys.exit(main())
