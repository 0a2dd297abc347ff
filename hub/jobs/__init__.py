"""Background work: one scheduler process (``agenthub worker``) and the jobs it runs."""
