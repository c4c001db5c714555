// The guide's "Python functions in plans", in TypeScript: a function task, direct arguments,
// context logging, value objects and task redirection.
// Run it with `npx hyperloom local --workers 2 --cpus 2 examples/functions.ts`.
import { Client, tasks } from "hyperloom";

type Data = { read(): Buffer; size(): number; unwrap(): unknown };
// Inside a function task, `tasks` is a global of the worker thread (the function travels as text).
declare const globalThis: { tasks: typeof tasks };

const [host, port] = (process.env.HYPERLOOM_SERVER ?? "127.0.0.1:9010").split(":");
const client = await Client.connect(host, Number(port));

const hello = tasks.jsTask(function hello(a: Data) {
  return "Hello " + a.read().toString();
});
const repeat = tasks.jsTask((n: number, d: Data) => d.read().toString().repeat(n), { nDirectArgs: 1 });
const logged = tasks.jsTask(
  (ctx: { taskId: number; logInfo(m: string): void }, d: Data) => {
    ctx.logInfo(`task ${ctx.taskId} got ${d.size()} bytes`);
    return d.read();
  },
  { context: true },
);
const describe = tasks.jsTask((v: Data) => JSON.stringify(v.unwrap()));
const bigger = tasks.jsTask(function bigger(a: Data, b: Data) {
  // Redirection: the returned task runs in place of this one.
  return a.size() >= b.size() ? globalThis.tasks.merge([a, b] as never) : globalThis.tasks.merge([b, a] as never);
});

const abc = tasks.const("ABC");
const results = await client.gather(
  client.submit([
    hello(tasks.const("world")),
    repeat(2, abc),
    repeat(3, abc),
    logged(abc),
    describe(tasks.jsValue({ answer: 42, list: [1, 2, 3] })),
    bigger(tasks.const("short"), tasks.const("longer one")),
  ]),
);
for (const r of results) console.log(String(r));
await client.close();
