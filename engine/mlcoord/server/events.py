"""The websocket's event hub: events published by the trading thread, fanned out to clients.

Publishing costs the trading thread one hand-over to the server's event loop per event
(``call_soon_threadsafe``), whatever the number of clients. Each client has a bounded queue; a
client whose queue is full is dropped (its socket closed with code 1013, "try again later"):
a slow client never slows trading and never makes the server hold an unbounded backlog.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

#: events a client may have waiting before it is dropped
CLIENT_QUEUE = 256


class Client:
    def __init__(self, size: int):
        self.queue: asyncio.Queue[Optional[dict[str, Any]]] = asyncio.Queue(maxsize=size)
        self.dropped = False


class EventHub:
    def __init__(self, queue_size: int = CLIENT_QUEUE):
        self.queue_size = queue_size
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.clients: set[Client] = set()
        self.dropped = 0            # clients dropped for being slow

    def publish(self, event: dict[str, Any]) -> None:
        """Any thread: hand ``event`` to every connected client."""
        loop = self.loop
        if loop is None or not self.clients or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._fan_out, event)
        except RuntimeError:        # the server's loop closed meanwhile
            pass

    def _fan_out(self, event: dict[str, Any]) -> None:
        for client in list(self.clients):
            try:
                client.queue.put_nowait(event)
            except asyncio.QueueFull:
                self.drop(client)

    def drop(self, client: Client, *, slow: bool = True) -> None:
        """End ``client``'s stream (its handler closes the socket: 1013 when it was too slow, 1001
        when the server stops)."""
        self.clients.discard(client)
        client.dropped = slow
        self.dropped += slow
        while not client.queue.empty():        # room for the closing sentinel
            client.queue.get_nowait()
        client.queue.put_nowait(None)

    def close(self) -> None:
        """Any thread: end every client's stream (the server is stopping)."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._close_all)
            except RuntimeError:
                pass

    def _close_all(self) -> None:
        for client in list(self.clients):
            self.drop(client, slow=False)

    def connect(self) -> Client:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        client = Client(self.queue_size)
        self.clients.add(client)
        return client

    def disconnect(self, client: Client) -> None:
        self.clients.discard(client)
