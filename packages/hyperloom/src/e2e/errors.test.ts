import { suite } from "uvu";
import * as assert from "uvu/assert";
import { LocalCluster } from "../cluster/local-cluster.js";
import { frame } from "../protocol/frame.js";
import { comm } from "../protocol/messages.js";
import { rawClient, request } from "./raw-client.js";

// Every ERROR the server sends about a task carries that task's id (the client's own id), so a
// client can route it to the right future. Checked on the wire, against the real server process.
const errors = suite<{ cluster: LocalCluster }>("errors name their task");

errors.before(async (ctx) => {
  ctx.cluster = await LocalCluster.start({ workers: 1, cpus: 1 });
});
errors.after(async (ctx) => {
  await ctx.cluster.stop();
});

errors("FETCH and RELEASE errors carry the task id; a rejected plan names its task", async ({ cluster }) => {
  const { s, next } = await rawClient(cluster);
  try {
    assert.is((await next()).type, comm.ClientResponse.Type.DICTIONARY);
    const T = comm.ClientRequest.Type;
    request(s, T.FETCH, 42);
    request(s, T.RELEASE, 7);
    for (const id of [42, 7]) {
      const r = await next();
      assert.is(r.type, comm.ClientResponse.Type.ERROR);
      assert.is(Buffer.from(r.error!.errorMsg!).toString(), `Invalid id: ${id}`);
      assert.is(r.error!.id, id, "the error names the task");
    }
    // A plan whose task 3 depends on an unknown id: rejected, naming task 3.
    const plan = { idBase: 3, tasks: [{ taskType: 7, config: Buffer.alloc(0), inputIds: [99], result: true }] };
    s.write(frame(comm.ClientRequest.encode({ type: T.PLAN, plan }).finish()));
    const r = await next();
    assert.is(r.type, comm.ClientResponse.Type.ERROR);
    assert.match(Buffer.from(r.error!.errorMsg!).toString(), /^Plan rejected: task id=3 .*unknown input id 99/);
    assert.is(r.error!.id, 3);
  } finally {
    s.destroy();
  }
});

errors.run();
