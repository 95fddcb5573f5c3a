"""One Redis or a Redis Cluster: connecting, the engine (where keys live, health), batched
reads, acknowledged writes, sharded pub/sub, the development Redis."""
