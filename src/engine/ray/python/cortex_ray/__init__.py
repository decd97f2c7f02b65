"""cortex's code on a Ray cluster: the driver of one API version's replicas (a Ray job's
entrypoint, `python -m cortex_ray`) and the replica actor it manages.

- `driver`: the loop. Every `CORTEX_RAY_INTERVAL` seconds it polls its actors, sends their
  state to the cortex server in one request and makes the actors match the desired set the
  server answers (start, restart on a higher generation, stop and kill). Start there: its doc
  is the protocol.
- `actor`: `ReplicaActor`, one per replica: runs the replica program as a child process,
  forwards its output, stops it gracefully. Kept in this importable module so that Ray pickles
  the class by reference, not by value from the driver's `__main__`.
- `sync`: the HTTP exchange with the server (urllib only).

Standard library plus `ray` only."""
