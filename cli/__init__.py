"""The ``veclink`` command line: an application over ``veclink.client`` and the libraries.

One module per command group (``serve``, ``collection``, ``points``, ``linkage``, ``jobs``,
``train``); ``main`` builds the argparse tree and runs a command. Modules import nothing
heavy at the top: torch, the gRPC server, scikit-learn and SQLAlchemy load inside the
command that needs them, so ``veclink --help`` stays fast.
"""
