// Builds the panel into ../tb_varmap/static (deterministic: no sourcemaps, no timestamps).
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "tb_varmap", "static");
mkdirSync(out, { recursive: true });
for (const f of readdirSync(out)) rmSync(join(out, f), { recursive: true });

await esbuild.build({
  entryPoints: [join(here, "src", "index.js")],
  outfile: join(out, "index.js"),
  bundle: true,
  format: "esm",
  minify: true,
  target: "es2020",
  legalComments: "none",
  charset: "utf8",
  loader: { ".css": "text" },
  logLevel: "warning",
});
// ELK's layout engine runs in a web worker served from static/.
copyFileSync(join(here, "node_modules", "elkjs", "lib", "elk-worker.min.js"), join(out, "elk-worker.js"));
