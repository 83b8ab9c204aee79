// Builds the page into OUT (default: the workspace's target/digimon-web): generates the Digimon
// client code from the shared proto (buf + protoc-gen-es), bundles src/app.js with esbuild and
// copies index.html. `make digimon-web` runs it after `npm ci`.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(process.argv[2] ?? path.join(here, "../../../target/digimon-web"));
const bin = path.join(here, "node_modules", ".bin");

execFileSync(path.join(bin, "buf"), ["generate"], {
  cwd: here,
  stdio: "inherit",
  env: { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH ?? ""}` },
});
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [path.join(here, "src", "app.js")],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: true,
  outfile: path.join(out, "app.js"),
  logLevel: "warning",
});
copyFileSync(path.join(here, "index.html"), path.join(out, "index.html"));
console.log(`digimon web page built in ${out}`);
