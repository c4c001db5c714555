import { test } from "uvu";
import * as assert from "uvu/assert";
import { parseDuration, wallTime } from "./duration.js";

test("durations as users write them", () => {
  assert.equal(["90", "90s", "5m", "1h30m", "2h", "1d", "01:30:00", "10:00"].map(parseDuration), [90, 90, 300, 5400, 7200, 86400, 5400, 600]);
  for (const bad of ["", "5x", "h", "1.5h", "-1m"]) assert.throws(() => parseDuration(bad), /invalid duration/);
  assert.equal([wallTime(59), wallTime(5400), wallTime(100 * 3600)], ["00:00:59", "01:30:00", "100:00:00"]);
});

test.run();
