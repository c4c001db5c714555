// The guide's "Python functions in plans", in TypeScript: a function task, direct arguments,
// context logging, value objects and task redirection.
// Run it with `npx hyperloom local --workers 2 --cpus 2 examples/functions.ts`.
import { Client, tasks, type TaskArg, type TaskContext } from "hyperloom";

// Inside a function task, `tasks` is a global of the worker thread (the function travels as text).
declare const globalThis: { tasks: typeof tasks };

const client = await Client.connect(); // HYPERLOOM_SERVER (set by `hyperloom local`), else 127.0.0.1:9010

// Inputs are TaskArgs (typed without annotations); direct arguments keep the function's types.
const hello = tasks.jsTask(function hello(a) {
  return "Hello " + a.read().toString();
});
const repeat = tasks.jsTask((n: number, d: TaskArg) => d.read().toString().repeat(n), { nDirectArgs: 1 });
const logged = tasks.jsTask(
  (ctx: TaskContext, d: TaskArg) => {
    ctx.logInfo(`task ${ctx.taskId} got ${d.size()} bytes`);
    return d.read();
  },
  { context: true },
);
const describe = tasks.jsTask((v) => JSON.stringify(v.unwrap()));
const bigger = tasks.jsTask(function bigger(a, b) {
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
