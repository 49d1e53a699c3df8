"""Op handlers, one module per op family.

Every module here whose name does not start with "_" is imported by
`_registry.load_handlers()`, so adding an op is adding one file (and its test).
"""
