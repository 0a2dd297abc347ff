"""The region's access log and the operator audit: one writer each, one list of actions.

A region's *access log* (``access_log`` in its own store) says who did what to which of its data
and when: every view of a woman's data, every change a job made for the region. The hub's
*operator audit* (``hub.operator_audit``) says what the agent's operators did: onboarding,
offboarding, resends, acknowledged alerts. Neither ever holds personal data in clear text.
"""

from hub.audit.log import (
    AccessEntry,
    Action,
    record_access,
    record_access_many,
    record_operator,
)

__all__ = ["AccessEntry", "Action", "record_access", "record_access_many", "record_operator"]
