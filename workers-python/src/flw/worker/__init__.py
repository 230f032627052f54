"""The worker: its loop, its channel and the processes around it (internal).

``_entry`` is ``python -m flw`` and ``flw.run()`` (``_load_error``: how a
script that raised at import is reported); ``_loop`` the serving
loop (pump threads, dispatch, cancel, watchdog); ``_channel`` the channel's
line reader and writer; ``_protocol`` the wire codec; ``_children`` the
subprocesses a call started; ``_fork_server`` and ``_fork_wire`` the fork
server and its control datagrams; ``_keeper`` a worker's subreaper parent.
"""
