// Must NOT compile: each line marked `error` is a type error (src/e2e/types.test.ts checks that
// tsc reports exactly those lines).
import { tasks, type Client } from "hyperloom";

declare const client: Client;
const square = tasks.jsTask((n: number) => String(n * n), { nDirectArgs: 1 });
square("three"); // error: a string is not a number
const wrapped = tasks.jsTask((ctx, d) => ctx.wrap({ n: d.size() }), { context: true });
const bytes: Promise<Buffer> = client.submitOne(wrapped(tasks.const("x"))).gather(); // error: the result is { n: number }
tasks.merge(["not a task"]); // error: inputs are tasks or futures

export { bytes };
