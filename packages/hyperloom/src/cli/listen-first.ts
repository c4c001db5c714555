/**
 * What `hyperloom server` and `loom-server` do first, before loading their modules: bind the main
 * port (issue #26: accepting within 100 ms of `exec`; see `server/early-listen.ts`). The address
 * is read from the command line by a quick look for the port and host options only; the full
 * parse (commander) comes after, and the server uses the early port only if it is bound on the
 * very address that parse gives — else it closes it and listens itself, as without this.
 */
import { listenEarly } from "../server/early-listen.js";

/** Defaults of the two commands (as their commander definitions say). */
const COMMANDS = {
  /** `hyperloom server [options]`: 127.0.0.1:9010. */
  hyperloom: { subcommand: "server", host: "127.0.0.1", port: 9010, hostOption: true },
  /** `loom-server [options] [ignored...]`: every interface, port 9010. */
  "loom-server": { subcommand: undefined, host: "0.0.0.0", port: 9010, hostOption: false },
} as const;

/**
 * The address `argv` (`process.argv`) most likely asks `command` to listen on; undefined when it
 * does not run a server or asks for help. Recognized: `-p N`, `-pN`, `--port N`, `--port=N`,
 * `--host H`, `--host=H` (`hyperloom server` only); the last one given wins, as in commander.
 */
export function serverAddress(command: keyof typeof COMMANDS, argv: readonly string[]): { host: string; port: number } | undefined {
  const c = COMMANDS[command];
  let args = argv.slice(2);
  if (c.subcommand !== undefined) {
    if (args[0] !== c.subcommand) return undefined;
    args = args.slice(1);
  }
  let host: string = c.host;
  let port: number = c.port;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") break;
    if (a === "-h" || a === "--help" || a === "-V" || a === "--version") return undefined;
    let value: string | undefined;
    let isPort = false;
    if (a === "-p" || a === "--port" || (c.hostOption && a === "--host")) {
      value = args[++i];
      isPort = a !== "--host";
    } else if (a.startsWith("--port=")) {
      value = a.slice("--port=".length);
      isPort = true;
    } else if (a.startsWith("-p") && !a.startsWith("--")) {
      value = a.slice(2);
      isPort = true;
    } else if (c.hostOption && a.startsWith("--host=")) {
      value = a.slice("--host=".length);
    } else continue;
    if (value === undefined || value === "") return undefined;
    if (!isPort) {
      host = value;
      continue;
    }
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0 || n > 65535) return undefined;
    port = n;
  }
  return { host, port };
}

/**
 * Binds the main port now if `argv` runs a server (see the module doc), then calls `then` (which
 * loads the command); for every other command only the latter. The port listens from the
 * moment `listenEarly` returns (the kernel completes connections while the modules load).
 */
export function listenFirst(command: keyof typeof COMMANDS, argv: readonly string[], then: () => void): void {
  const at = serverAddress(command, argv);
  if (at !== undefined) listenEarly(at.host, at.port);
  then();
}
