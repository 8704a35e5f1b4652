// The operator's view of a running cluster (an origin with a director, two
// edge processes, viewers through the director): the stream page counts the
// viewers and charts them, offers the director's URL, shows the variant they
// follow; a 10 s keyframe interval is warned of; the Nodes page lists both
// edges with their load; an edge killed with SIGKILL shows dead. Run by
// tests/it/ui.rs: FERRY_URL, FERRY_TOKEN, STREAM, VIEWERS, KILL_PID, SHOT_DIR.
"use strict";
const path = require("path");
const { launch } = require("./browser.cjs");

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} not set`); return v; };

(async () => {
  const browser = await launch();
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const stream = env("STREAM");
  const viewers = Number(env("VIEWERS"));
  const shot = (name) => page.screenshot({ path: path.join(env("SHOT_DIR"), name), fullPage: true });
  try {
    await page.goto(env("FERRY_URL"));
    await page.fill("#token", env("FERRY_TOKEN"));
    await page.click("#signin-form button[type=submit]");
    await page.waitForSelector("#streams:not([hidden])");

    // The viewers, counted where they watch (directors beat every second).
    await page.waitForFunction(([s, n]) => {
      const cell = document.querySelector(`[data-audience="${s}"] .hls-viewers`);
      return cell && cell.textContent === `HLS ${n}`;
    }, [stream, viewers], { timeout: 20000 });
    // The 10 s GOP stream is warned of, with the OBS setting to change.
    await page.waitForSelector('tr[data-stream="longgop"] [data-warning="keyframe_interval"]', { timeout: 30000 });
    const warning = await page.textContent('tr[data-stream="longgop"] [data-warning="keyframe_interval"]');
    if (!warning.includes("Keyframe Interval")) throw new Error("warning without the setting: " + warning);

    await page.click(`tr[data-stream="${stream}"] button:has-text("Open")`);
    // The variant every viewer follows, and what the edges served.
    await page.waitForFunction((n) => {
      const row = document.querySelector('#detail-live tr[data-variant="source"]');
      return row && row.children[1].textContent === String(n);
    }, viewers, { timeout: 15000 });
    await page.waitForFunction((s) => /edges answered [1-9]\d* requests/.test(document.querySelector(`[data-edge-traffic="${s}"]`).textContent), stream, { timeout: 15000 });
    // The viewers over time, charted.
    await page.waitForFunction((n) => {
      const c = document.querySelector('[data-chart="Viewers"]');
      return c && Number(c.dataset.points) >= 3 && c.textContent.includes(`${n} (max`);
    }, viewers, { timeout: 15000 });
    const director = await page.textContent('[data-url="director"] code');
    if (!director.endsWith(`/hls/${stream}/master.m3u8`)) throw new Error("bad director URL: " + director);
    console.log("director url=" + director);
    const urls = await page.textContent("#detail-urls");
    if ((urls.match(/Edge /g) || []).length !== 2) throw new Error("not both edges' URLs: " + urls);
    if (!urls.includes("Publish")) throw new Error("no publish URL: " + urls);
    await shot("stream-cluster.png");

    // The cluster: both edges live, with viewers and a load chart; the
    // director with its viewers; the origin with its streams.
    await page.click('button[data-view="nodes"]');
    await page.waitForFunction(() => document.querySelectorAll('#edge-table tr[data-state="live"]').length === 2, null, { timeout: 10000 });
    await page.waitForFunction((n) => {
      const rows = [...document.querySelectorAll("#edge-table tbody tr")];
      const total = rows.reduce((a, r) => a + Number(r.children[4].textContent), 0);
      return total === n && rows.every((r) => r.querySelector('[data-chart="Viewers"]'));
    }, viewers, { timeout: 15000 });
    await page.waitForFunction((n) => [...document.querySelectorAll("#node-table [data-serves]")]
      .some((c) => c.textContent.startsWith(`${n} viewers`)), viewers, { timeout: 10000 });
    const serves = await page.textContent("#node-table tbody");
    if (!serves.includes("live: ")) throw new Error("the origin's streams are not shown: " + serves);

    // SIGKILL one edge: it shows dead within the dead-edge time and a refresh.
    const killed = Date.now();
    process.kill(Number(env("KILL_PID")), "SIGKILL");
    await page.waitForFunction(() => document.querySelectorAll('#edge-table tr[data-state="dead"]').length === 1, null, { timeout: 15000 });
    console.log("edge shown dead after ms=" + (Date.now() - killed));
    await shot("nodes-cluster.png");
    if (errors.length) throw new Error("page errors: " + errors.join("; "));
    console.log("cluster ui ok");
  } catch (e) {
    try { await shot("cluster-failed.png"); } catch (_) { /* best effort */ }
    console.error("cluster ui failed:", e.message, errors.join("; "));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
