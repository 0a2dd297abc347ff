"""Operations: the senders' alerts and each region's drop status, for the agent's operators."""
