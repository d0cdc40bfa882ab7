"""Reading terminal output in tests: does it set a colour?"""

from __future__ import annotations

import re

SGR = re.compile(r"\x1b\[([0-9;]*)m")


def coloured(screen: str) -> bool:
    """Any SGR sequence that sets a colour (39/49, back to the default, do not)."""
    return any(30 <= n <= 38 or 40 <= n <= 48 or 90 <= n <= 97 or 100 <= n <= 107
               for params in SGR.findall(screen)
               for n in map(int, filter(None, params.split(";"))))
