"""The hub as NTjP consumer: outbox, per-destination senders, the RIVTA resend policy."""
