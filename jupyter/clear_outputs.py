"""Clear outputs and execution counts of notebooks in place (they are stored without outputs).

Usage: .venv/bin/python jupyter/clear_outputs.py jupyter/*.ipynb
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat


def clear(path: Path) -> bool:
    """Strip outputs from one notebook; True when the file changed."""
    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.outputs or cell.execution_count is not None:
            changed = True
        cell.outputs = []
        cell.execution_count = None
        cell.metadata.pop("execution", None)
    if changed:
        nbformat.write(nb, path)
    return changed


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    for name in argv:
        p = Path(name)
        if not p.is_file():
            print(f"clear_outputs: {p}: no such notebook", file=sys.stderr)
            return 2
        print(f"{p}: {'cleared' if clear(p) else 'already clean'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
