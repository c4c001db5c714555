/** A uvu suite with a local cluster and a connected client for its tests (started once). */
import { suite, type Test } from "uvu";
import { LocalCluster, type LocalClusterOptions } from "../cluster/local-cluster.js";
import type { Client } from "../client/client.js";

/** What every test of a cluster suite receives. */
export interface ClusterContext {
  cluster: LocalCluster;
  client: Client;
}

/** A suite whose tests share one cluster of `options` and one client; both stopped after. */
export function clusterSuite(name: string, options: LocalClusterOptions): Test<ClusterContext> {
  const t = suite<ClusterContext>(name);
  t.before(async (ctx) => {
    ctx.cluster = await LocalCluster.start(options);
    ctx.client = await ctx.cluster.connect();
  });
  t.after(async (ctx) => {
    await ctx.client.close();
    await ctx.cluster.stop();
  });
  return t;
}
