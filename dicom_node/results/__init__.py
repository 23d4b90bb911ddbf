"""The result objects for the PACS (SR and Secondary Capture): datasets in, datasets out, no I/O."""
