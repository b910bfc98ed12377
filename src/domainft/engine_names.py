"""The engine registry: the single list of the engines domainft can drive.

A leaf: it imports nothing from domainft, so the recipe schema (which lists the engines a recipe may name), the
CLI's help and `doctor` read it without loading the engines package. Adding an engine is one folder
(`domainft/engines/<name>/` with the `ENGINE` class, `lock.txt` and `known.json`, and its templates in
`templates/<name>/`) plus its name below; `domainft.engines.get_engine` imports its module when first asked.
"""

NAMES: tuple[str, ...] = ("llamafactory", "axolotl", "swift")
