"""Flex Template entry point: the launcher runs this file with the template's parameters.

Dataflow's launcher runs ``python templates/main.py --manifest=... --output=... [Beam options]``
(``FLEX_TEMPLATE_PYTHON_PY_FILE`` in the Dockerfiles). Everything the workers unpickle lives in
the installed packages, not in this ``__main__`` module.
"""

from pipeline.run import run

if __name__ == "__main__":
    run()
