#!/usr/bin/env node
// The `loom-server` command. A file kept in the repository (not in dist/), so that npm links it at
// install time even in a fresh clone, before `npm run build` has compiled dist/.
"use strict";
const path = require("node:path");
const target = path.join(__dirname, "..", "dist", "cli", "loom-server.js");
if (!require("node:fs").existsSync(target)) {
  process.stderr.write("loom-server: HyperLoom is not built yet: run 'npm run build' in the repository first\n");
  process.exit(1);
}
require(target);
