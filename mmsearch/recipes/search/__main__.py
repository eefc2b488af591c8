"""``python -m mmsearch.recipes.search CONFIG.yaml [key=value ...]``: one search in this process."""
import sys

from mmsearch.recipes.search.recipe import main

if __name__ == "__main__":
    sys.exit(main())
