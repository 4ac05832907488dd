"""Notifications (issue 18): Telegram, Discord and a generic JSON webhook.

The events are the websocket's (:class:`~mlcoord.live.controls.ControlChannel` ``events``): the
notifier is one more sink on that list, so nothing is computed twice. A sink must not block the
trading thread, so :meth:`Notifier.on_event <mlcoord.notify.service.Notifier.on_event>` only puts
the event on each channel's bounded :class:`~mlcoord.notify.outbox.Outbox` (O(1); a full one
drops its oldest item and counts it); a worker thread per channel formats and sends, with retries
and exponential backoff on an injectable clock.

* :mod:`~mlcoord.notify.settings`: ``[notify]``, ``[notify.telegram]``, ``[notify.discord]``,
  ``[notify.webhook]`` (typed; tokens and URLs come from environment variables only).
* :mod:`~mlcoord.notify.events`: which websocket event is which notification kind, its text.
* :mod:`~mlcoord.notify.outbox`: the queue, the worker, retries, counters.
* :mod:`~mlcoord.notify.http`: one JSON POST over urllib with typed errors.
* :mod:`~mlcoord.notify.discord`, :mod:`~mlcoord.notify.webhook`, :mod:`~mlcoord.notify.telegram`
  (and :mod:`~mlcoord.notify.commands`, the Telegram commands): the channels.
* :mod:`~mlcoord.notify.service`: builds the channels from the settings, health and reload.

Channels are not pluggy plugins: they take no part in a decision (like the API server and the
exchange venues, they are front ends of a running bot), their settings live in ``[notify.NAME]``,
and a channel is any object with ``name`` and ``send(notification)`` (:class:`~mlcoord.notify.outbox.Sender`),
so one more is a class in :data:`~mlcoord.notify.service.CHANNELS`.
"""
