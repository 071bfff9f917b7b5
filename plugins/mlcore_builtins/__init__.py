"""mlcore's built-in plugins, registered through the same entry points a third-party
package would use (see pyproject.toml). One sub-package per plugin family; each
``__init__`` holds light plugin objects, the heavy code sits in sibling modules imported
inside ``build``."""
