"""IBAN validity by schwifty (country format, length, MOD-97): never hand-written."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=65536)
def is_valid_iban(value: str) -> bool:
    from schwifty import IBAN
    from schwifty.exceptions import SchwiftyException

    try:
        IBAN(value)
    except SchwiftyException:
        return False
    return True
