// The guide's "Running external programs": stdin, mapped files, variables, several outputs, and a
// failing program. Run it with `npx hyperloom local --workers 2 examples/programs.ts`.
import { Client, TaskFailed, tasks } from "hyperloom";

const client = await Client.connect(); // HYPERLOOM_SERVER (set by `hyperloom local`), else 127.0.0.1:9010

const text = tasks.const("Hello\nLoom\nworld\nLoom again\n");
const grep = tasks.run("/bin/grep Loom", [], { stdin: text });
const cat = tasks.run("/bin/cat file1 file2", [[tasks.const("ONE\n"), "file1"], [tasks.const("TWO\n"), "file2"]]);
const echo = tasks.run("/bin/echo $NAME", [[tasks.const("HyperLoom"), "$NAME"]]);
const both = tasks.run(["/bin/sh", "-c", "echo FILE > out.txt; echo STDOUT"], [], { outputs: ["out.txt", null] });

const results = await client.gather(client.submit([grep, cat, echo, both]));
for (const r of results) console.log(Array.isArray(r) ? r.map(String) : String(r));

try {
  await client.submitOne(tasks.run("ls /non-existing-directory")).gather();
} catch (e) {
  if (e instanceof TaskFailed) console.log(e.message);
  else throw e;
}
await client.close();
