// The guide's first example ("Basic usage"): two constants merged on the cluster.
// Run it with `npm run hello` (a local cluster), or `npx hyperloom local examples/hello.ts`.
import { Client, tasks } from "hyperloom";

const client = await Client.connect(); // HYPERLOOM_SERVER (set by `hyperloom local`), else 127.0.0.1:9010

const task1 = tasks.const("Hello ");
const task2 = tasks.const("world!");
const task3 = tasks.merge([task1, task2]);

const future = client.submitOne(task3);
const result = await future.gather();
console.log(result.toString()); // Hello world!

await client.close();
