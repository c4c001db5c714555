import { test } from "uvu";
import * as assert from "uvu/assert";
import { serverAddress } from "./listen-first.js";

const argv = (...a: string[]): string[] => ["/usr/bin/node", "/x/main.js", ...a];

test("hyperloom: only `server` binds early, at the defaults or the options given (the last wins)", () => {
  assert.equal(serverAddress("hyperloom", argv("server")), { host: "127.0.0.1", port: 9010 });
  assert.equal(serverAddress("hyperloom", argv("server", "--port", "0")), { host: "127.0.0.1", port: 0 });
  assert.equal(serverAddress("hyperloom", argv("server", "-p", "1234", "--host", "0.0.0.0")), { host: "0.0.0.0", port: 1234 });
  assert.equal(serverAddress("hyperloom", argv("server", "--port=7", "--host=::1", "-p8")), { host: "::1", port: 8 });
  assert.equal(serverAddress("hyperloom", argv("server", "--journal", "j", "--tls", "--port", "5")), { host: "127.0.0.1", port: 5 });
  assert.is(serverAddress("hyperloom", argv("worker", "127.0.0.1", "9010")), undefined);
  assert.is(serverAddress("hyperloom", argv("local", "server")), undefined);
  assert.is(serverAddress("hyperloom", argv()), undefined);
});

test("help, version, a port that is not one or a missing value: no early bind (commander says what is wrong)", () => {
  assert.is(serverAddress("hyperloom", argv("server", "--help")), undefined);
  assert.is(serverAddress("hyperloom", argv("server", "-V")), undefined);
  assert.is(serverAddress("hyperloom", argv("server", "--port", "x")), undefined);
  assert.is(serverAddress("hyperloom", argv("server", "--port", "70000")), undefined);
  assert.is(serverAddress("hyperloom", argv("server", "--port")), undefined);
  assert.is(serverAddress("hyperloom", argv("server", "--host")), undefined);
  assert.is(serverAddress("loom-server", argv("-h")), undefined);
});

test("loom-server: every interface, -p/--port, positionals ignored, no --host option", () => {
  assert.equal(serverAddress("loom-server", argv()), { host: "0.0.0.0", port: 9010 });
  assert.equal(serverAddress("loom-server", argv("--port", "9011", "ignored")), { host: "0.0.0.0", port: 9011 });
  assert.equal(serverAddress("loom-server", argv("--debug", "-p", "9012")), { host: "0.0.0.0", port: 9012 });
  assert.equal(serverAddress("loom-server", argv("--host", "10.0.0.1")), { host: "0.0.0.0", port: 9010 });
});

test.run();
