"""Processes and faces: the node's roles, the command line, the demo and its stand-in PACS."""
