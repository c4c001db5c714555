/**
 * Every `ts`/`js` code block of README.md, and every script in examples/, runs as written under
 * `hyperloom local` in a fresh project that installed hyperloom: exit status 0, nothing on stderr
 * but the cluster's line (no warning, no error), and for `console.log(...); // text` lines, that
 * text on stdout (`\n` as in the comment). Nothing is left behind.
 */
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { copyFileSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { assertNothingLeft, cli, local, pkgDir, removeSandboxes, runNode, sandbox } from "./sandbox.js";

const repo = join(pkgDir, "..", "..");

/** The code blocks of a Markdown text in the given languages, with the line where each starts. */
function codeBlocks(markdown: string, languages: string[]): Array<{ lang: string; line: number; code: string }> {
  const blocks: Array<{ lang: string; line: number; code: string }> = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w+)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) body.push(lines[i]!);
    if (languages.includes(open[1]!)) blocks.push({ lang: open[1]!, line: start + 1, code: body.join("\n") + "\n" });
  }
  return blocks;
}

/** What the script's `console.log(...); // text` lines promise on stdout. */
function promisedOutput(code: string): string {
  return code
    .split("\n")
    .flatMap((l) => {
      const m = /console\.log\(.*\);\s*\/\/ (.*)$/.exec(l);
      return m ? [m[1]!.replace(/\\n/g, "\n") + "\n"] : [];
    })
    .join("");
}

const t = suite("README and examples run as written");
t.after(removeSandboxes);

const readme = codeBlocks(readFileSync(join(repo, "README.md"), "utf8"), ["ts", "typescript", "js", "javascript", "mjs"]);

t("README.md has code blocks to run", () => {
  assert.ok(readme.length >= 4, `found ${readme.length}`);
});

for (const block of readme) {
  t(`README.md block at line ${block.line} (${block.lang})`, async () => {
    const sb = sandbox();
    const file = `readme-${block.line}.${block.lang.startsWith("t") ? "ts" : "mjs"}`;
    writeFileSync(join(sb.proj, file), block.code);
    const r = await local(sb, ["--workers", "2", "--cpus", "1", file]);
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stderr, /^HyperLoom local cluster: server 127\.0\.0\.1:\d+, 2 worker\(s\) x 1 cpu\(s\), dashboard http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]{64}\n$/, r.stderr);
    const promised = promisedOutput(block.code);
    if (promised !== "") assert.is(r.stdout, promised);
    // The traces block is followed by `npx hyperloom report mytrace -o report.html`: it works on what the block wrote.
    assert.is(readdirSync(sb.proj).includes("mytrace"), block.code.includes('setTrace("mytrace")'));
    if (block.code.includes('setTrace("mytrace")')) {
      const report = await runNode([cli, "report", "mytrace", "-o", join(sb.tmp, "report.html")], { cwd: sb.proj });
      assert.is(report.code, 0, report.stderr);
      assert.match(report.stderr, /^Report written to /);
      rmSync(join(sb.tmp, "report.html"));
    }
    // What a block writes on purpose (a trace directory) is its own; nothing else may appear.
    const written = readdirSync(sb.proj).filter((f) => f !== file && f !== "node_modules" && f !== "mytrace");
    assert.equal(written, []);
    await assertNothingLeft(sb, readdirSync(sb.proj).filter((f) => f !== "node_modules"));
  });
}

for (const example of readdirSync(join(repo, "examples")).filter((f) => f.endsWith(".ts"))) {
  t(`examples/${example}`, async () => {
    const sb = sandbox();
    copyFileSync(join(repo, "examples", example), join(sb.proj, example));
    const r = await local(sb, ["--workers", "2", "--cpus", "2", example]);
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stderr, /^HyperLoom local cluster: [^\n]*\n$/, r.stderr);
    const promised = promisedOutput(readFileSync(join(repo, "examples", example), "utf8"));
    if (promised !== "") assert.match(r.stdout, promised);
    await assertNothingLeft(sb, [example]);
  });
}

t.run();
