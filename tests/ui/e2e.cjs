// Drives Ferry's web UI in headless Chromium (Debian's, through playwright-core):
// sign in, create a stream, publish to it with ffmpeg using the key the page
// shows, see it live, watch the hls.js preview play, add a task with the
// generated form. Run by tests/it/ui.rs, which starts Ferry and passes:
//   FERRY_URL, FERRY_TOKEN, SAMPLE (an FLV file), SHOT (screenshot path), FFMPEG
"use strict";
const { spawn } = require("child_process");
const { launch } = require("./browser.cjs");

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} not set`); return v; };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

(async () => {
  const browser = await launch();
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // The UI is served with a strict Content-Security-Policy: anything it blocks is a bug.
  page.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy/i.test(m.text())) errors.push(m.text());
  });
  let ffmpeg = null;
  try {
    await page.goto(env("FERRY_URL"));
    // A wrong token is refused where it was typed.
    await page.fill("#token", "not-the-token");
    await page.click("#signin-form button[type=submit]");
    await page.waitForFunction(() => document.getElementById("signin-error").textContent.includes("not valid"));
    await page.fill("#token", env("FERRY_TOKEN"));
    await page.click("#signin-form button[type=submit]");
    await page.waitForSelector("#streams:not([hidden])");

    // A bad name is explained; a good one shows the server and key to copy.
    await page.fill("#new-stream-name", "bad name");
    await page.evaluate(() => document.getElementById("new-stream-name").removeAttribute("pattern"));
    await page.click("#new-stream button[type=submit]");
    await page.waitForFunction(() => document.getElementById("streams-error").textContent.includes("letters"));
    await page.fill("#new-stream-name", "uitest");
    await page.click("#new-stream button[type=submit]");
    await page.waitForSelector("#created:not([hidden])");
    const server = (await page.textContent("#created-server")).trim();
    const key = (await page.textContent("#created-key")).trim();
    if (!server.startsWith("rtmp://") || key.length !== 48) throw new Error(`bad publish info: ${server} ${key}`);

    ffmpeg = spawn(process.env.FFMPEG || "ffmpeg", ["-nostdin", "-loglevel", "error", "-re", "-stream_loop", "10",
      "-i", env("SAMPLE"), "-c", "copy", "-f", "flv", `${server}/${key}`], { stdio: "inherit" });

    await page.waitForSelector('[data-live="uitest"]', { timeout: 20000 });
    await page.waitForFunction(() => /bit\/s/.test(document.querySelector('tr[data-stream="uitest"] .bitrate').textContent), null, { timeout: 10000 });
    // People apart from what Ferry feeds: nobody watches, the packager feeds on it.
    await page.waitForFunction(() => {
      const cell = document.querySelector('[data-audience="uitest"]');
      return cell && /HLS 0 · RTMP 0/.test(cell.textContent) && /feeds: .*hls 1/.test(cell.textContent);
    }, null, { timeout: 10000 });
    // A 2 s GOP against 2 s segments: its interval shown, no warning.
    await page.waitForFunction(() => /GOP 2\.0 s/.test(document.querySelector('tr[data-stream="uitest"]').textContent), null, { timeout: 10000 });
    if (await page.$('tr[data-stream="uitest"] [data-warning]')) throw new Error("a warning for a 2 s GOP");
    await page.click('tr[data-stream="uitest"] button:has-text("Open")');

    // The preview plays: currentTime advances.
    await page.waitForFunction(() => document.getElementById("preview").currentTime > 1, null, { timeout: 30000 });
    const t1 = await page.evaluate(() => document.getElementById("preview").currentTime);
    await sleep(1500);
    const t2 = await page.evaluate(() => document.getElementById("preview").currentTime);
    if (!(t2 > t1 + 0.5)) throw new Error(`preview is not advancing: ${t1} -> ${t2}`);

    // Where to point players, and the recent history charted.
    const urls = await page.textContent("#detail-urls");
    for (const want of ["/hls/uitest/master.m3u8", "/live/uitest"]) {
      if (!urls.includes(want)) throw new Error(`no ${want} among the playback URLs: ${urls}`);
    }
    await page.waitForFunction(() => {
      const c = document.querySelector('[data-chart="Bitrate"]');
      return c && Number(c.dataset.points) >= 2 && /bit\/s/.test(c.textContent);
    }, null, { timeout: 15000 });

    // The task form comes from the task type's schema; errors show by the form.
    await page.selectOption("#task-kind", "restream");
    await page.fill("#field-url", "http://not-rtmp/x/y");
    await page.click("#task-form button[type=submit]");
    await page.waitForFunction(() => document.getElementById("task-error").textContent.includes("rtmp://"));
    await page.fill("#field-url", "rtmp://127.0.0.1:9/live/target-secret-key");
    await page.click("#task-form button[type=submit]");
    await page.waitForFunction(() => document.getElementById("detail-tasks").textContent.includes("restream"), null, { timeout: 10000 });
    const shown = await page.textContent("#detail-tasks");
    if (shown.includes("target-secret-key")) throw new Error("the restream key is shown in the UI");

    // Settings: turn the ladder on for the next publish.
    await page.selectOption("#setting-transcode", "true");
    await page.click("#settings-form button[type=submit]");
    await page.waitForFunction(() => document.getElementById("settings-saved").textContent.includes("Saved"));

    await page.screenshot({ path: env("SHOT"), fullPage: true });
    if (errors.length) throw new Error("page errors: " + errors.join("; "));
    const saved = await page.evaluate(async (token) => {
      const r = await fetch("/api/v1/streams/uitest", { headers: { Authorization: "Bearer " + token } });
      return (await r.json()).settings;
    }, env("FERRY_TOKEN"));
    if (saved.transcode !== true) throw new Error("settings not saved: " + JSON.stringify(saved));
    console.log(`ui ok: live, preview at ${t2.toFixed(1)} s`);
  } catch (e) {
    try { await page.screenshot({ path: env("SHOT"), fullPage: true }); } catch (_) { /* best effort */ }
    console.error("ui test failed:", e.message, errors.join("; "));
    process.exitCode = 1;
  } finally {
    if (ffmpeg) ffmpeg.kill("SIGKILL");
    await browser.close();
  }
})();
