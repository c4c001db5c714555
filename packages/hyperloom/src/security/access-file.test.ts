import { suite } from "uvu";
import * as assert from "uvu/assert";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { AccessFileError, readAccessFile, Secret, writeAccessFile } from "./access-file.js";

const t = suite("access file");
const dir = mkdtempSync(join(tmpdir(), "hyperloom-access-"));

t("written with mode 0600 and read back; the fingerprint is kept", () => {
  const secret = Secret.generate();
  const path = join(dir, "sub", "access.json");
  const fp = Array.from({ length: 32 }, (_, i) => (i * 7).toString(16).padStart(2, "0").toUpperCase()).join(":");
  writeAccessFile(path, { host: "127.0.0.1", port: 9010, secret, tlsFingerprint: fp });
  assert.is(statSync(path).mode & 0o777, 0o600);
  assert.is(statSync(join(dir, "sub")).mode & 0o777, 0o700);
  const a = readAccessFile(path);
  assert.is(a.host, "127.0.0.1");
  assert.is(a.port, 9010);
  assert.is(a.tlsFingerprint, fp);
  assert.ok(a.secret.key().equals(secret.key()));
});

t("a file other users may read is refused, naming the chmod that fixes it", () => {
  const path = join(dir, "open.json");
  writeAccessFile(path, { host: "h", port: 1, secret: Secret.generate() });
  for (const mode of [0o644, 0o640, 0o604]) {
    chmodSync(path, mode);
    assert.throws(
      () => readAccessFile(path),
      (e: Error) => e instanceof AccessFileError && e.message.includes(`mode 0${mode.toString(8)}`) && e.message.includes(`chmod 600 ${path}`),
    );
  }
});

t("a missing or malformed file gets one clear error that never echoes the secret", () => {
  assert.throws(() => readAccessFile(join(dir, "none.json")), /does not exist/);
  const path = join(dir, "bad.json");
  const almost = "ab".repeat(15) + "zz"; // 32 characters, not hex
  writeFileSync(path, JSON.stringify({ version: 1, host: "h", port: 1, secret: almost }), { mode: 0o600 });
  assert.throws(
    () => readAccessFile(path),
    (e: Error) => e.message.includes("'secret' must be") && !e.message.includes(almost),
  );
});

t("a secret prints as [secret] everywhere", () => {
  const s = Secret.generate();
  const hex = s.toHex();
  for (const shown of [String(s), `${s}`, inspect(s), inspect({ s }), JSON.stringify({ s }), inspect(readBack(s))]) {
    assert.not.ok(shown.includes(hex), shown);
    assert.ok(shown.includes("[secret]"), shown);
  }
});

function readBack(s: Secret): object {
  const path = join(dir, "rb.json");
  writeAccessFile(path, { host: "h", port: 2, secret: s });
  assert.ok(readFileSync(path, "utf8").includes(s.toHex()));
  return readAccessFile(path);
}

t.after(() => rmSync(dir, { recursive: true, force: true }));
t.run();
