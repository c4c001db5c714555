#!/usr/bin/env node
// The `hyperloom` command. A file kept in the repository (not in dist/), so that npm links it at
// install time even in a fresh clone, before `npm run build` has compiled dist/.
"use strict";
const path = require("node:path");
const target = path.join(__dirname, "..", "dist", "cli", "main.js");
if (!require("node:fs").existsSync(target)) {
  process.stderr.write("hyperloom: HyperLoom is not built yet: run 'npm run build' in the repository first\n");
  process.exit(1);
}
require(target);
