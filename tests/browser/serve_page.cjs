// Drives `retrain serve`'s page in headless Chromium as a person would: picks photos in the
// file input, waits for each card's bars, classifies a frame of a (synthetic) camera, prints what the page shows as JSON, screenshots it.
// usage: node serve_page.cjs CHROMIUM URL SCREENSHOT.png PHOTO...
"use strict";
const path = require("path");
const { chromium } = require(path.join(__dirname, "../../.browser/node_modules/playwright-core"));

(async () => {
  const [exe, url, shot, ...photos] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: exe,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
      // A synthetic camera (Chromium's test pattern), granted without a prompt.
      "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"],
  });
  const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning") problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(String(e)));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()}`));
  await page.goto(url);
  await page.check("#heat");
  await page.setInputFiles("#file", photos);
  await page.waitForFunction((n) => document.querySelectorAll(".card .row.first, .card .error").length >= n, photos.length, { timeout: 30000 });
  // Heatmaps for the photos (not for the file that is not one).
  await page.waitForFunction((n) => document.querySelectorAll(".card img.heat").length >= n, photos.length - 1, { timeout: 30000 });
  // The camera: one frame classified.
  await page.click("#cam");
  await page.waitForFunction(() => document.getElementById("video").videoWidth > 0, null, { timeout: 15000 });
  await page.click("#snap");
  await page.waitForFunction((n) => document.querySelectorAll(".card .row.first, .card .error").length >= n, photos.length + 1, { timeout: 30000 });
  const cards = await page.$$eval(".card", (cs) => cs.map((c) => ({
    name: c.querySelector(".name").textContent,
    top: c.querySelector(".row.first") && c.querySelector(".row.first").dataset.class,
    shown: c.querySelector(".row.first .p") && c.querySelector(".row.first .p").textContent,
    error: c.querySelector(".error") && c.querySelector(".error").textContent,
    imageLoaded: c.querySelector("img").complete && c.querySelector("img").naturalWidth > 0,
    heatmap: c.querySelector("img").classList.contains("heat") ? c.querySelector("img").naturalWidth : null,
    seen: c.querySelector(".seen") && c.querySelector(".seen").textContent,
    unknown: c.querySelector(".unknown") && c.querySelector(".unknown").textContent,
    // A several-labels model: the labels line, and each bar's class, threshold and whether it is on.
    labels: c.querySelector(".labels") && c.querySelector(".labels").textContent,
    rows: Array.from(c.querySelectorAll(".row")).map((r) => {
      const mark = r.querySelector(".bar b"), bar = r.querySelector(".bar");
      return { class: r.dataset.class, on: r.classList.contains("on"), threshold: r.dataset.threshold === undefined ? null : Number(r.dataset.threshold),
        // Where the mark is drawn, as a share of the bar's width.
        mark: mark ? (mark.getBoundingClientRect().left + 1 - bar.getBoundingClientRect().left) / bar.getBoundingClientRect().width : null };
    }),
  })));
  await page.screenshot({ path: shot, fullPage: true });
  await browser.close();
  console.log(JSON.stringify({ cards, problems }));
})().catch((e) => { console.error(e); process.exit(1); });
