"""The SOAP producer endpoint NTjP calls for member regions."""
