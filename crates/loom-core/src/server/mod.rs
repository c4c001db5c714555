//! Server side of HyperLoom: plan ingestion, task graph, scheduler, client and worker protocols.
