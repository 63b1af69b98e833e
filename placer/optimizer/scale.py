"""Which search a fleet takes by its size: the exact MIP (``solve``) or the scalable route (``large``).

Apart from ``large`` so that asking costs nothing: ``large`` imports scipy, HiGHS and the route's
modules (0.2 s), which every plan of a small fleet paid only to learn it would not use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from placer.knobs import env_choice

if TYPE_CHECKING:
    from placer.fleet import Fleet

SMALL_FLEET = 800  # models x pools up to which optimize() keeps the exact MIP (tests, examples)


def forced_route() -> str | None:
    """The route PLACER_OPTIMIZER=exact|scalable forces, None where it is unset (KnobError for another word)."""
    return env_choice("PLACER_OPTIMIZER", ("exact", "scalable"), "the route by the fleet's size")


def use_large(fleet: Fleet) -> bool:
    """The scalable route for fleets beyond SMALL_FLEET; PLACER_OPTIMIZER=exact|scalable forces one."""
    forced = forced_route()
    if forced is not None:
        return forced == "scalable"
    return len(fleet.models) * len(fleet.pools) > SMALL_FLEET
