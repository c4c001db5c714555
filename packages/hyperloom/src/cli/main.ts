#!/usr/bin/env node
/**
 * The `hyperloom` command's entry: `hyperloom server` binds its main port first, and the command
 * (`hyperloom.ts`, commander and the server's modules) loads once the port listens (issue #26:
 * accepting within 100 ms of `exec`); every other command loads at once.
 */
import { listenFirst } from "./listen-first.js";

listenFirst("hyperloom", process.argv, () => require("./hyperloom.js"));
