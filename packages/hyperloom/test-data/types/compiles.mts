// Must compile (strict) against the published types (dist/index.d.ts); every `@ts-expect-error`
// line must be an error, or tsc reports the directive as unused. Checked by src/e2e/types.test.ts.
import { Client, tasks, type Future, type Task, type TaskArg, type TaskContext } from "hyperloom";

declare const client: Client;

// jsTask: direct arguments take the function's parameter types; the rest are inputs.
const square = tasks.jsTask((n: number) => String(n * n), { nDirectArgs: 1 });
square(3);
// @ts-expect-error a string is not a number
square("three");
const repeat = tasks.jsTask((n: number, d: TaskArg) => d.read().toString().repeat(n), { nDirectArgs: 1 });
repeat(2, tasks.const("ab"));
// @ts-expect-error an input is a task or a future, not a string
repeat(2, "ab");
// Without direct arguments, the function's parameters are TaskArgs (no annotation needed).
const hello = tasks.jsTask(function hello(a) {
  return "Hello " + a.read().toString();
});
// @ts-expect-error an input is a task or a future
hello(42);
// With `context: true`, the first parameter is the TaskContext.
const counted = tasks.jsTask(
  (ctx, d) => {
    ctx.logInfo(`task ${ctx.taskId}`);
    return ctx.wrap({ n: d.size() });
  },
  { context: true },
);
const scaled = tasks.jsTask((ctx: TaskContext, k: number, d: TaskArg) => ctx.wrap(k * d.size()), { context: true, nDirectArgs: 1 });
scaled(2, tasks.const("abc"));
// @ts-expect-error k is a number
scaled("2", tasks.const("abc"));

// Future<T> carries the task's result type.
const greeting: Future<Buffer> = client.submitOne(hello(tasks.const("world")));
const count: Promise<{ n: number }> = client.submitOne(counted(tasks.const("abc"))).gather();
// @ts-expect-error the result is { n: number }, not a Buffer
const notBytes: Promise<Buffer> = client.submitOne(counted(tasks.const("abc"))).gather();
const lines: Promise<Buffer[]> = client.submitOne(tasks.split(tasks.const("a\nb\n"))).fetch();
const value: Promise<{ answer: number }> = client.submitOne(tasks.jsValue({ answer: 42 })).gather();
const outputs: Promise<Buffer[]> = client.submitOne(tasks.run(["/bin/sh", "-c", "echo A > out; echo B"], [], { outputs: ["out", null] })).gather();
const both = client.submit([tasks.const("a"), tasks.const("b")]);
const texts: Promise<Buffer[]> = client.gather(both);
const stated: Promise<string> = greeting.gather<string>(); // an explicit type still wins

// Internal members are not part of the published types.
declare const task: Task;
declare const future: Future;
// @ts-expect-error internal
void task._epoch;
// @ts-expect-error internal
void future.status_;
// @ts-expect-error internal
client._awaited();
// @ts-expect-error checkRunFileName is not a task builder
tasks.checkRunFileName("x");

export { count, notBytes, lines, value, outputs, texts, stated };
