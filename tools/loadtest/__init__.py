"""The load tool: ``python -m tools.loadtest`` drives the service with the real client paths (the SDK) at an
open-loop arrival rate or with N closed-loop users, and reports latency percentiles, throughput and errors
as JSON and PNG plots.

Layer: tools. Pure parts (``histogram``, ``schedule``, ``mix``, ``recorder``, ``report``, ``target``) import
nothing from the service; ``runner`` is the event-loop engine; ``workload`` holds the scenarios over
``tools.sdk``; ``__main__`` wires them. Nothing is imported here, so importing one part never pays for the
others (the plots import matplotlib only when drawn).
"""
