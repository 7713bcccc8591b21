"""The oldest versions pyproject.toml declares, as pip constraints (``name==floor``).

    python .ci/floors.py            print the constraints (one per run-time dependency)
    python .ci/floors.py --check    exit 1 unless the installed versions are those floors

Used by ``.ci/oldest``: the floors in pyproject.toml are what CI tests, not a guess.
"""

import re
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path


def floors():
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    found = {}
    for req in project["project"]["dependencies"]:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)\s*", req)
        if m is None:
            sys.exit(f"{req!r}: every run-time dependency needs a plain '>=' floor")
        found[m.group(1)] = m.group(2)
    return found


def main():
    pins = floors()
    if "--check" not in sys.argv:
        print("\n".join(f"{name}=={v}" for name, v in pins.items()))
        return
    wrong = [f"{name} {version(name)} (floor {v})" for name, v in pins.items()
             if version(name).split("+")[0] not in (v, v + ".0", v + ".0.0")]
    if wrong:
        sys.exit("not the declared floors: " + ", ".join(wrong))
    print("oldest declared versions installed:", ", ".join(f"{n} {v}" for n, v in pins.items()))


if __name__ == "__main__":
    main()
