"""Outbound: approved records to other regions through NTjP, with the RIVTA resend policy."""
