"""Add to a wheelhouse what the images' Python needs but the host's did not.

    python3 deploy/wheel_closure.py WHEELHOUSE 3.11.2

`pip wheel` on the host resolves environment markers for the host's interpreter; an
image whose CPython is another patch release can need more (Debian bookworm's 3.11.2:
redis needs async-timeout on python_full_version < "3.11.3"). This reads every wheel's
Requires-Dist, evaluates the markers for the target version, and downloads (binary
only, for this platform) each requirement that no wheel in the house satisfies, until
nothing is missing. Bounded: at most 10 rounds.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name, parse_wheel_filename
except ImportError:  # pip always carries a copy
    from pip._vendor.packaging.markers import default_environment  # type: ignore[no-redef]
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename  # type: ignore[no-redef]


def wheels(house: Path) -> dict[str, tuple[object, Path]]:
    out = {}
    for w in house.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(w.name)
        out[canonicalize_name(name)] = (version, w)
    return out


def requires(whl: Path) -> list[Requirement]:
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        msg = Parser().parsestr(z.read(meta).decode("utf-8"))
    return [Requirement(r) for r in msg.get_all("Requires-Dist") or []]


def missing(house: Path, env: dict[str, str], roots: list[Requirement]) -> list[str]:
    have = wheels(house)
    out = []
    todo = list(roots)
    for _, w in have.values():
        todo += requires(w)
    for req in todo:
        # Extras only matter when asked for; the base requirement set plus the extras the
        # packages themselves request (e.g. redis[hiredis]) is what pip installs.
        if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
            continue
        got = have.get(canonicalize_name(req.name))
        if got is None or not req.specifier.contains(str(got[0]), prereleases=True):
            out.append(str(Requirement(f"{req.name}{req.specifier}")))
    return sorted(set(out))


def main() -> int:
    house, target = Path(sys.argv[1]), sys.argv[2]
    env = dict(default_environment())
    env["python_full_version"] = target
    env["python_version"] = ".".join(target.split(".")[:2])
    for _ in range(10):
        need = missing(house, env, [])
        if not need:
            return 0
        print(f"wheel_closure: for Python {target}: {' '.join(need)}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                        "--only-binary=:all:", "--no-deps", "-d", str(house), *need], check=True, timeout=600)
    print("wheel_closure: still missing after 10 rounds", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
