"""Delivery of received messages to the regions' drops: the files, and the run that writes them."""
