// Loaded with `node --require` into a Node that runs under qemu-user (scripts/target-runtime.sh).
// qemu-user emulates one process: when that Node starts a child with its own process.execPath (the
// CLI's `local` cluster, script runner), the kernel cannot run the foreign binary without a
// binfmt_misc registration, which a container does not have. This does what that registration
// would: such children start through the qemu wrapper named by HYPERLOOM_EMULATED_NODE. Any other
// program (the worker's `run` tasks, sh, npm's scripts) starts unchanged.
"use strict";
const childProcess = require("node:child_process");
const { syncBuiltinESMExports } = require("node:module");

const wrapper = process.env.HYPERLOOM_EMULATED_NODE;
if (wrapper) {
  const self = process.execPath;
  const viaWrapper = (file) => (file === self ? wrapper : file);
  for (const name of ["spawn", "spawnSync", "execFile", "execFileSync"]) {
    const original = childProcess[name];
    childProcess[name] = function (file, ...rest) {
      return original.call(this, viaWrapper(file), ...rest);
    };
  }
  const fork = childProcess.fork;
  childProcess.fork = function (modulePath, args, options) {
    if (!Array.isArray(args)) return childProcess.fork(modulePath, [], args);
    return fork.call(this, modulePath, args, { ...options, execPath: viaWrapper(options?.execPath ?? self) });
  };
  syncBuiltinESMExports(); // `import { spawn } from "node:child_process"` sees the same functions
}
