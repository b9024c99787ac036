"""``python -m gradatim.bench --child REQUEST``: the measuring subprocess (see
:func:`gradatim.bench.child.child_main`); ``gradatim bench`` is the command for people."""

from __future__ import annotations

import sys

from gradatim.bench.child import child_main

if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        raise SystemExit(child_main(sys.argv[2:]))
    raise SystemExit("usage: gradatim bench ... (python -m gradatim bench)")
