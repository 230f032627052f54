"""The graph DSL and its in-process runner (internal: ``flw`` exports the public names).

``_base`` holds linking, ``Flow``, ``Parallel``, options and errors;
``_node`` the ``@node`` functions; ``_class_node`` PocketFlow's class
nodes; ``_batch_flow`` the batch flows; ``_manifest`` what a worker
announces in ``hello``; ``_node_call`` one phase of a node for a ``node``
message; ``_run`` the in-process runner behind ``flow.run(shared)``.
"""
