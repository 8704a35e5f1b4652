// Plays an HLS URL with hls.js in headless Chromium (Debian's, through
// playwright-core) and reports playback: a line "playing" once it plays,
// "progress WALL_MS CURRENT_TIME" every 200 ms, and at the end
// "summary {json}" with the time played and the longest stall (wall time
// during which currentTime did not advance after playback started).
//   PLAY_URL: the multivariant playlist; SECONDS: how long to watch.
"use strict";
const path = require("path");
const { launch } = require("./browser.cjs");
const hlsJs = path.join(__dirname, "../../ui/node_modules/hls.js/dist/hls.min.js");

const url = process.env.PLAY_URL;
const seconds = Number(process.env.SECONDS || "10");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

(async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.setContent('<video id="v" muted autoplay playsinline></video>');
    await page.addScriptTag({ path: hlsJs });
    await page.evaluate((src) => {
      window.fatal = [];
      const hls = new Hls({ liveSyncDurationCount: 3 });
      hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) window.fatal.push(d.type + ":" + d.details); });
      hls.loadSource(src);
      hls.attachMedia(document.getElementById("v"));
    }, url);
    const started = Date.now();
    const current = () => page.evaluate(() => document.getElementById("v").currentTime);
    while ((await current()) <= 0.5) {
      if (Date.now() - started > 30000) throw new Error("no playback within 30 s");
      await sleep(100);
    }
    console.log("playing");
    const t0 = Date.now();
    let last = await current();
    let lastMove = Date.now();
    let maxStall = 0;
    while (Date.now() - t0 < seconds * 1000) {
      await sleep(200);
      const ct = await current();
      const now = Date.now();
      if (ct > last + 0.01) {
        maxStall = Math.max(maxStall, now - lastMove);
        lastMove = now;
        last = ct;
      }
      console.log(`progress ${now - t0} ${ct.toFixed(3)}`);
    }
    maxStall = Math.max(maxStall, Date.now() - lastMove);
    const fatal = await page.evaluate(() => window.fatal);
    const summary = { startup_ms: t0 - started, played: last, max_stall_ms: maxStall, fatal, errors };
    console.log("summary " + JSON.stringify(summary));
  } catch (e) {
    console.error("play failed:", e.message);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
