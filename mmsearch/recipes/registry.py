"""The recipe registry ``RECIPES``: name -> :class:`~mmsearch.recipes.entry.Recipe`.

The package's recipes register when their package is imported; :func:`recipe_entry` imports every
package under ``mmsearch/recipes/`` on first lookup (so importing a recipe's config does not import every other recipe). A recipe of
an experiment or a test registers itself by calling :func:`register_recipe` at import.
"""
from __future__ import annotations

from mmsearch.recipes.entry import Recipe
from mmsearch.registry import Registry

RECIPES: Registry[Recipe] = Registry("recipe")


def register_recipe(entry: Recipe) -> Recipe:
    RECIPES.add(entry.name, entry)
    return entry


def _import_builtin() -> None:
    """Import every recipe package of ``mmsearch/recipes/`` (each registers its entry at import)."""
    import importlib
    import pkgutil

    import mmsearch.recipes

    for module in sorted(pkgutil.iter_modules(mmsearch.recipes.__path__), key=lambda m: m.name):
        if module.ispkg:
            importlib.import_module(f"mmsearch.recipes.{module.name}")


def recipe_entry(name: str) -> Recipe:
    """The recipe registered as ``name`` (the package's recipes included); unknown names list the known ones."""
    _import_builtin()
    return RECIPES.get(name)


def recipe_names() -> list[str]:
    _import_builtin()
    return RECIPES.names()


__all__ = ["RECIPES", "recipe_entry", "recipe_names", "register_recipe"]
