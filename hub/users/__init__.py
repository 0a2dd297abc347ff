"""The people who sign in: accounts, roles per region, passwords, second factors, API tokens.

An account is a row of ``hub.users`` with its roles in ``hub.user_roles``; what it may do is
decided in one place only, :mod:`hub.tenancy.access`, from the :class:`~hub.tenancy.access.Actor`
that :func:`hub.users.accounts.actor_of` builds. Sign-in is strong: a SITHS card (through the
ingress), or a password (Argon2id) *and* a time-based one-time code (TOTP). See docs/web.md.
"""
