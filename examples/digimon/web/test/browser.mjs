// Browser test driver: loads the digimon page from http://web.backend.com in headless Chromium
// (every *.backend.com name mapped to the mesh listener), creates, feeds and watches a digimon
// through the page's form, saves a screenshot and prints what the page shows as one JSON line.
// It asserts nothing itself: tests/tests/browser.rs does.
//
// node test/browser.mjs --port N --screenshot FILE [--name NAME] [--food FOOD]
//                       [--chromium /usr/bin/chromium] [--timeout-ms 30000]
import { mkdirSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const { values: opt } = parseArgs({
  options: {
    port: { type: "string" },
    screenshot: { type: "string" },
    name: { type: "string", default: "Agumon" },
    food: { type: "string", default: "meat" },
    chromium: { type: "string", default: process.env.CHROMIUM ?? "/usr/bin/chromium" },
    "timeout-ms": { type: "string", default: "30000" },
  },
});
if (!opt.port || !opt.screenshot) {
  console.error("usage: node test/browser.mjs --port N --screenshot FILE [--name NAME] [--food FOOD]");
  process.exit(2);
}
const timeout = Number(opt["timeout-ms"]);

const result = { console: [], failedRequests: [], responses: [] };
const browser = await chromium.launch({
  executablePath: opt.chromium,
  headless: true,
  // Playwright adds --no-sandbox and a fresh temporary profile (--user-data-dir) itself.
  args: [
    `--host-resolver-rules=MAP *.backend.com 127.0.0.1:${opt.port}`,
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 620 } });
  page.on("console", (m) => result.console.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => result.console.push(`pageerror: ${e.message}`));
  page.on("requestfailed", (r) =>
    result.failedRequests.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
  page.on("response", (r) =>
    result.responses.push(`${r.request().method()} ${r.url()} ${r.status()}`));
  try {
    await page.goto("http://web.backend.com/", { timeout });
    result.title = await page.title();
    result.origin = await page.evaluate(() => location.origin);
    await page.fill("#name", opt.name);
    await page.fill("#food", opt.food);
    await page.click("#go");
    await page.waitForFunction(
      () => ["done", "error"].includes(document.getElementById("state").dataset.state),
      null,
      { timeout },
    );
  } catch (e) {
    result.runnerError = String(e?.message ?? e);
  }
  // What the page shows, whatever happened.
  Object.assign(result, await page.evaluate(() => ({
    state: document.getElementById("state")?.dataset.state ?? null,
    stateText: document.getElementById("state")?.textContent ?? null,
    created: document.getElementById("created")?.textContent ?? null,
    updates: [...document.querySelectorAll("#updates li")].map((li) => li.textContent),
    error: document.getElementById("error")?.textContent ?? null,
  })).catch((e) => ({ runnerError: String(e?.message ?? e) })));
  mkdirSync(path.dirname(opt.screenshot), { recursive: true });
  await page.screenshot({ path: opt.screenshot, fullPage: true });
  result.screenshot = opt.screenshot;
  result.browser = browser.version();
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
