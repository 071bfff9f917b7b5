"""An example mlcore plugin package (imports as ``mlcore_example``)."""
