// Checkpoints: a result written to a file by its worker, then loaded instead of computed.
// Run it with `npx hyperloom local examples/checkpoints.ts` (it writes under the system's temp folder).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client, tasks } from "hyperloom";

const [host, port] = (process.env.HYPERLOOM_SERVER ?? "127.0.0.1:9010").split(":");
const client = await Client.connect(host, Number(port));
const dir = mkdtempSync(join(tmpdir(), "checkpoints-example-"));

const raw = tasks.const("pear\napple\nfig\n");
const parsed = tasks.run("/usr/bin/sort", [], { stdin: raw });
parsed.checkpointPath = join(dir, "parsed"); // absolute; a relative path throws LoomError
const report = tasks.merge([parsed, tasks.const("\n")]);
report.checkpointPath = join(dir, "report");

console.log(String(await client.submitOne(report).gather())); // computes and writes both files
console.log(String(await client.submitOne(report, { load: true }).gather())); // loads report; parsed is not computed

rmSync(dir, { recursive: true, force: true });
await client.close();
