"""veclink on Ray: sharded collections, encoder replicas and distributed linkage jobs.

Beside `veclink.service` in the layering: the service imports it lazily, in cluster mode
only; it imports `veclink.index`, `veclink.encoders` and `veclink.linkage`. Ray itself is
imported only by the modules that talk to a cluster (`runtime`, `ray_shards`, `encoder_pool`,
`linkage_job`); `routing`, `shard` and `sharded` work without it, so a sharded collection
also opens in embedded mode (its shards then live in the server process).
"""
