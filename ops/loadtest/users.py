"""``VotsUser``: the base of the bundled Locust user classes (imports Locust).

It is a ``FastHttpUser`` (geventhttpclient: several times the requests/s of
``HttpUser`` per core) that knows about the scenario's arrival rate. Without
one, a user waits ``think_time`` seconds between tasks, like any Locust user.
With ``arrival_rate`` set, each user starts a task every
``users / arrival_rate`` seconds on a fixed schedule, as wrk2 paces each
connection: a task that starts late (because the previous response was slow)
records how late it was, and the Locust plugin adds that to the latency it
reports "from intended start". A user that falls behind catches up back-to-back
instead of silently lowering the offered load.

One task iteration is one scheduled arrival; write one request per task for
figures that mean what they say. Redirects are not followed: a 3xx is the
response, so load never follows a Location header to another host. (Any
user class, this one or a plain Locust one, can connect only to the target's
checked addresses: ``ops.loadtest.pinning``.)
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

from locust import FastHttpUser
from locust.exception import StopUser

_CONFIG: dict[str, Any] = json.loads(os.environ.get("VOTS_OPS_LOADTEST", "{}"))
# Set by the plugin when this process has spent its share of max_requests: a
# VotsUser then sends nothing more, instead of until the runner gets to stop it.
BUDGET_SPENT = [False]


def pacing(environment: Any) -> tuple[float, int] | None:
    """(arrival rate, users) this run is paced at, or None without an arrival rate.

    The master decides: it passes both as Locust arguments (``--vots-arrival-rate``,
    ``--vots-users``, from the plugin), which Locust hands every worker with the
    spawn message, so ``--users``/``--arrival-rate`` given to the master pace
    workers started elsewhere from their own scenarios file. A process that
    has no such arguments (a locustfile run by Locust alone) reads the CLI's
    configuration.
    """
    opts = getattr(environment, "parsed_options", None)
    if opts is not None and hasattr(opts, "vots_arrival_rate"):
        rate, users = opts.vots_arrival_rate, opts.vots_users
    else:
        rate, users = _CONFIG.get("arrival_rate"), _CONFIG.get("users")
    return (float(rate), int(users)) if rate and users else None


class VotsUser(FastHttpUser):
    """A FastHttpUser with think time, or wrk2-style pacing under an arrival rate."""

    abstract = True
    think_time: tuple[float, float] = (0.0, 0.0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        paced = pacing(self.environment)
        self._interval: float | None = paced[1] / paced[0] if paced else None
        # Redirects are answers, not instructions: a 301 to https:// or an SSO
        # login page elsewhere must not carry the load to a host nobody allowed.
        # geventhttpclient declares the set a ClassVar but reads it through self,
        # so an instance attribute overrides it for this user's client alone (as
        # Locust itself does for allow_redirects=False); the class stays as is
        # for user classes that do follow redirects.
        self.client.client.redirect_response_codes = frozenset()  # type: ignore[misc]
        self._next: float | None = None
        self._fresh = True
        self._late_us = 0

    def wait_time(self) -> float:
        if BUDGET_SPENT[0]:
            raise StopUser
        if self._interval is None:
            lo, hi = self.think_time
            return random.uniform(lo, hi) if hi > 0 else 0.0
        now = time.time()
        if self._next is None:
            self._next = now
        self._next += self._interval
        self._fresh = True
        return max(0.0, self._next - now)

    def context(self) -> dict[str, Any]:
        if self._interval is None:
            return {}
        if self._fresh:
            now = time.time()
            if self._next is None:  # the first task runs right after on_start
                self._next = now
            self._late_us = max(0, int((now - self._next) * 1_000_000))
            self._fresh = False
        return {"vots_late_us": self._late_us}
