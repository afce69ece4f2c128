"""Locust users for the load tests: one class per stand-in endpoint (tests/support/standin.py)."""

from __future__ import annotations

from locust import FastHttpUser, task

from ops.loadtest.users import VotsUser


class Fast(VotsUser):
    @task
    def fast(self) -> None:
        self.client.get("/fast")


class Sleep50(VotsUser):
    @task
    def sleep50(self) -> None:
        self.client.get("/sleep/50")


class Sleep123(VotsUser):
    @task
    def sleep123(self) -> None:
        self.client.get("/sleep/123")


class Slow(VotsUser):
    @task
    def slow(self) -> None:
        self.client.get("/sleep/300")


class Fail(VotsUser):
    @task
    def fail(self) -> None:
        self.client.get("/fail")


class Delayed(VotsUser):
    @task
    def delayed(self) -> None:
        self.client.get("/delayed")


class Stall(VotsUser):
    @task
    def stall(self) -> None:
        self.client.get("/stall")


class Plain(FastHttpUser):
    """Not a VotsUser: cannot be paced to an arrival rate."""

    @task
    def fast(self) -> None:
        self.client.get("/fast")


class Redirected(VotsUser):
    @task
    def redirected(self) -> None:
        self.client.get("/redirect")


class Escape(VotsUser):
    """Sends a request to a host nobody allowed (an absolute URL)."""

    @task
    def escape(self) -> None:
        self.client.get("http://127.0.0.2:9/elsewhere")


class Broken(VotsUser):
    """Every task raises after its request, like a check on a missing JSON key."""

    @task
    def broken(self) -> None:
        self.client.get("/fast").json()["missing_key"]


class Sleep200(VotsUser):
    """A server slower than the driver: each request waits 200 ms."""

    @task
    def sleep200(self) -> None:
        self.client.get("/sleep/200")


class Static(VotsUser):
    """A file nginx serves from memory: the driver, not the server, is the limit."""

    @task
    def static(self) -> None:
        self.client.get("/static.json")


class BrokenCatch(VotsUser):
    """Raises inside a catch_response block, after the request was answered."""

    @task
    def broken(self) -> None:
        with self.client.get("/fast", catch_response=True) as response:
            response.json()["missing_key"]
