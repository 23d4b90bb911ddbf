"""Bytes in, durably: the spool, the protocol-neutral store and the DIMSE SCP that calls it."""
