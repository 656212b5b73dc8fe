// Builds web/dist: type-checks with tsc (strict), bundles the app and the
// SDK with esbuild, and copies the static files. No CDN; dist is not
// committed.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, "dist");
const t0 = Date.now();
execFileSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", root], { stdio: "inherit" });
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
const common = { bundle: true, target: "es2022", sourcemap: true, logLevel: "warning" };
await Promise.all([
  build({ ...common, entryPoints: [join(root, "src/app/main.ts")], outfile: join(dist, "app.js"), format: "iife", minify: true }),
  build({ ...common, entryPoints: [join(root, "src/sdk/index.ts")], outfile: join(dist, "sdk/parley.js"), format: "esm", platform: "neutral" }),
]);
for (const f of ["index.html", "style.css"]) cpSync(join(root, "src/app", f), join(dist, f));
console.log(`built web/dist in ${Date.now() - t0} ms`);
