"""The local environment's services on 127.0.0.1 (moto, a Docker engine, an OCI registry), started
and stopped by pidfile with one spawn-and-wait helper; state under `.local/`."""
