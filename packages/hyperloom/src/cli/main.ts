#!/usr/bin/env node
/**
 * The `hyperloom` command's entry: `hyperloom server` binds its main port first, and the command
 * (`hyperloom.ts`, commander and the server's modules) loads once the port listens (issue #26:
 * accepting within 100 ms of `exec`); every other command loads at once, nothing more.
 */
const command = (): unknown => require("./hyperloom.js");

if (process.argv[2] === "server") (require("./listen-first.js") as typeof import("./listen-first.js")).listenFirst("hyperloom", process.argv, command);
else command();
