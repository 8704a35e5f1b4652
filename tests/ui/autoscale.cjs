// The Nodes page with the autoscaler on: the farm, its last decisions with
// their figures and rule, and the actions taken (drains, removals) are shown,
// with no page error. Run by tests/it/autoscale.rs: FERRY_URL, FERRY_TOKEN, SHOT.
"use strict";
const { launch } = require("./browser.cjs");

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} not set`); return v; };

(async () => {
  const browser = await launch();
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  try {
    await page.goto(env("FERRY_URL"));
    await page.fill("#token", env("FERRY_TOKEN"));
    await page.click("#signin-form button[type=submit]");
    await page.waitForSelector("#streams:not([hidden])");
    await page.click('button[data-view="nodes"]');
    await page.waitForSelector("#autoscale:not([hidden])", { timeout: 10000 });
    await page.waitForFunction(() => /local provider: \d+ edges, \d+ wanted/.test(document.getElementById("autoscale-summary").textContent));
    await page.waitForFunction(() => document.querySelectorAll("#autoscale-decisions tbody tr").length > 0);
    const figures = await page.textContent("#autoscale-decisions tbody");
    if (!/viewers \d+ % of 80 %/.test(figures)) throw new Error("no viewer figures: " + figures);
    const actions = await page.textContent("#autoscale-actions");
    if (!/remove edge-local-\d+ — drained: quiet/.test(actions)) throw new Error("no removal shown: " + actions);
    const viewers = await page.textContent("#edge-table thead");
    if (!viewers.includes("Viewers")) throw new Error("no viewers column");
    // The cluster at a glance: the director with its viewers, edges with their pool.
    await page.waitForFunction(() => [...document.querySelectorAll("#node-table [data-serves]")].some((c) => /\d+ viewers?\b/.test(c.textContent)));
    const pools = await page.textContent("#edge-table tbody");
    if (!pools.includes("default")) throw new Error("no pool shown: " + pools);
    await page.screenshot({ path: env("SHOT"), fullPage: true });
    if (errors.length) throw new Error("page errors: " + errors.join("; "));
    console.log("autoscale ui ok");
  } catch (e) {
    try { await page.screenshot({ path: env("SHOT"), fullPage: true }); } catch (_) { /* best effort */ }
    console.error("autoscale ui failed:", e.message, errors.join("; "));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
