// Headless Chromium (Debian's, or CHROMIUM) through playwright-core from
// ui/node_modules, with the options every browser test uses: no sandbox (CI
// runs as root), no GPU, no QUIC, no background traffic, autoplay allowed.
"use strict";
const path = require("path");
const { chromium } = require(path.join(__dirname, "../../ui/node_modules/playwright-core"));

exports.launch = () => chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"],
});
