// Plays an HLS URL with hls.js in headless Chromium (Debian's, through
// playwright-core) and reports playback: a line "playing" once it plays,
// "progress WALL_MS CURRENT_TIME" every 200 ms, and at the end
// "summary {json}" with the time played and the longest stall (wall time
// during which currentTime did not advance after playback started).
//   PLAY_URL: the multivariant playlist; SECONDS: how long to watch;
//   LOW_LATENCY=1: hls.js in lowLatencyMode (LL-HLS parts, blocking reloads).
// The summary also has the latency from ingest to display, sampled every
// 200 ms after the first 5 s of playback: Date.now() - hls.playingDate (the
// origin stamps EXT-X-PROGRAM-DATE-TIME from its ingest clock).
"use strict";
const path = require("path");
const { launch } = require("./browser.cjs");
const hlsJs = path.join(__dirname, "../../ui/node_modules/hls.js/dist/hls.min.js");

const url = process.env.PLAY_URL;
const seconds = Number(process.env.SECONDS || "10");
const lowLatency = process.env.LOW_LATENCY === "1";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

(async () => {
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.setContent('<video id="v" muted autoplay playsinline></video>');
    await page.addScriptTag({ path: hlsJs });
    await page.evaluate(([src, lowLatency]) => {
      window.fatal = [];
      const hls = lowLatency
        ? new Hls({ lowLatencyMode: true })
        : new Hls({ liveSyncDurationCount: 3 });
      window.hls = hls;
      hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) window.fatal.push(d.type + ":" + d.details + (d.error ? " (" + d.error.message + ")" : "") + (d.url ? " " + d.url : "") + (d.networkDetails && typeof d.networkDetails.responseText === "string" ? " body: " + d.networkDetails.responseText.slice(0, 600) : "")); });
      hls.loadSource(src);
      hls.attachMedia(document.getElementById("v"));
    }, [url, lowLatency]);
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
    const latencies = [];
    while (Date.now() - t0 < seconds * 1000) {
      await sleep(200);
      const ct = await current();
      const now = Date.now();
      const latency = await page.evaluate(() =>
        window.hls.playingDate ? Date.now() - window.hls.playingDate.getTime() : null);
      if (latency !== null && now - t0 > 5000) latencies.push(latency);
      if (ct > last + 0.01) {
        maxStall = Math.max(maxStall, now - lastMove);
        lastMove = now;
        last = ct;
      }
      console.log(`progress ${now - t0} ${ct.toFixed(3)}`);
    }
    maxStall = Math.max(maxStall, Date.now() - lastMove);
    const fatal = await page.evaluate(() => window.fatal);
    latencies.sort((a, b) => a - b);
    const pct = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] : -1);
    const summary = {
      startup_ms: t0 - started, played: last, max_stall_ms: maxStall,
      latency_p50_ms: pct(0.5), latency_p95_ms: pct(0.95), latency_samples: latencies.length,
      fatal, errors,
    };
    console.log("summary " + JSON.stringify(summary));
  } catch (e) {
    console.error("play failed:", e.message);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
