/**
 * V8's compile cache for the commands' modules (issue #26, startup): on Node >= 22.1
 * `module.enableCompileCache()` keeps the compiled code of every module loaded after it in
 * `<tmpdir>/node-compile-cache` (Node's default; `NODE_COMPILE_CACHE` moves it,
 * `NODE_DISABLE_COMPILE_CACHE=1` turns it off), so a server or worker started again compiles less.
 * Node 20 has no such cache: nothing happens there. Imported first by each command's entry point.
 */
import * as nodeModule from "node:module";

(nodeModule as { enableCompileCache?: () => unknown }).enableCompileCache?.();
