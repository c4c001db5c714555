// Checkpoints: results written to files by their workers, then loaded instead of computed.
// Run it with `npx hyperloom local examples/checkpoints.ts` (it writes under the system's temp folder).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client, tasks } from "hyperloom";

const client = await Client.connect();
const dir = mkdtempSync(join(tmpdir(), "checkpoints-")); // absolute; a relative path throws LoomError
const sorted = tasks.run("/usr/bin/sort", [], { stdin: tasks.const("pear\napple\nfig\n") });
sorted.checkpointPath = join(dir, "sorted");
const report = tasks.merge([tasks.const("fruits: "), sorted]);
report.checkpointPath = join(dir, "report");
console.log(String(await client.submitOne(report).gather())); // fruits: apple\nfig\npear\n
console.log(readFileSync(join(dir, "sorted"), "utf8")); // apple\nfig\npear\n
rmSync(join(dir, "sorted")); // report's checkpoint remains: it is loaded, sort does not run again
const again = await client.submitOne(report, { load: true }).gather();
console.log(String(again)); // fruits: apple\nfig\npear\n
rmSync(dir, { recursive: true });
await client.close();
