"""Workers on their own network hosts: namespaces, shaped links, loss, outages and a delay relay (issue 19).

Used by ``fedmist run --topology/--link``; needs root (``ip netns``, ``tc``, ``nft``).
"""
