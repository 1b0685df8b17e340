"""Who may do what: one rule, Django's model permissions, for the admin, the dashboard
and the API.

| to                                                        | needs                  |
|-----------------------------------------------------------|------------------------|
| read runs, their steps, functions; open the dashboard     | ``view_run``           |
| read events (lists, pages, event data shown with a run)   | ``view_event``         |
| cancel, rerun, retry runs                                 | ``change_run``         |
| send an event as a user (dashboard form, ``api/events/``) | ``add_event``          |

As in the admin, ``change_<model>`` implies ``view_<model>``; superusers have
every permission. The admin and the dashboard also require ``is_staff``; the API
requires whatever ``API_PERMISSION_CLASSES`` allows (staff by default) and then
the same permission. Event keys send events and do nothing else.
"""

from __future__ import annotations

from typing import Any

VIEW_RUN = "durable_flows.view_run"
VIEW_EVENT = "durable_flows.view_event"
CHANGE_RUN = "durable_flows.change_run"
CHANGE_EVENT = "durable_flows.change_event"
ADD_EVENT = "durable_flows.add_event"


def _has(user: Any, *perms: str) -> bool:
    """Any of ``perms`` (Django's ``has_perm`` is False for inactive and anonymous users)."""
    return user is not None and any(user.has_perm(perm) for perm in perms)


def can_view_runs(user: Any) -> bool:
    return _has(user, VIEW_RUN, CHANGE_RUN)


def can_view_events(user: Any) -> bool:
    return _has(user, VIEW_EVENT, CHANGE_EVENT)


def can_control_runs(user: Any) -> bool:
    return _has(user, CHANGE_RUN)


def can_send_events(user: Any) -> bool:
    return _has(user, ADD_EVENT)


def can_read_anything(user: Any) -> bool:
    return can_view_runs(user) or can_view_events(user)


RULES = {
    "view_runs": (can_view_runs, VIEW_RUN),
    "view_events": (can_view_events, VIEW_EVENT),
    "control_runs": (can_control_runs, CHANGE_RUN),
    "send_events": (can_send_events, ADD_EVENT),
    "read": (can_read_anything, f"{VIEW_RUN} or {VIEW_EVENT}"),
}


def allowed(user: Any, rule: str) -> bool:
    return RULES[rule][0](user)


def needed(rule: str) -> str:
    """The permission a rule asks for, for messages."""
    return RULES[rule][1]


def for_user(user: Any) -> dict[str, bool]:
    """Every rule's answer for ``user``, for templates (``can.control_runs``...)."""
    return {rule: check(user) for rule, (check, _) in RULES.items()}


def is_staff(user: Any) -> bool:
    return bool(user is not None and user.is_active and user.is_staff)
