// Drives a `retrain export web` page in headless Chromium as a person would: waits for the
// model, picks photos in the file input, reads each card's bars, classifies frames of a
// (synthetic) camera and keeps one, screenshots the page; then, once the service worker holds
// the files, stops the web server (SIGTERM to SERVER_PID), reloads and classifies a photo
// offline. Prints what the page showed as JSON.
// usage: node web_page.cjs CHROMIUM URL SCREENSHOT.png SERVER_PID FILE...
"use strict";
const path = require("path");
const { chromium } = require(path.join(__dirname, "../../.browser/node_modules/playwright-core"));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cards = (page) => page.$$eval(".card", (cs) => cs.map((c) => ({
  name: c.dataset.name,
  done: c.dataset.done,
  top: Array.from(c.querySelectorAll(".row")).map((r) => ({ class: r.dataset.class, probability: Number(r.dataset.probability), shown: r.querySelector(".p").textContent })),
  ood_score: c.querySelector(".bars").dataset.oodScore === undefined ? null : Number(c.querySelector(".bars").dataset.oodScore),
  unknown: c.querySelector(".unknown") && c.querySelector(".unknown").textContent,
  // A several-labels model: the labels line, and each bar's threshold and whether it is on.
  labels: c.querySelector(".labels") && c.querySelector(".labels").textContent,
  marks: Array.from(c.querySelectorAll(".row")).map((r) => {
    const mark = r.querySelector(".mark"), track = r.querySelector(".track");
    return { class: r.dataset.class, on: r.classList.contains("on"), threshold: r.dataset.threshold === undefined ? null : Number(r.dataset.threshold),
      at: mark ? (mark.getBoundingClientRect().left + 1 - track.getBoundingClientRect().left) / track.getBoundingClientRect().width : null };
  }),
  error: c.querySelector(".error") && c.querySelector(".error").textContent,
  imageLoaded: !!c.querySelector("img") && c.querySelector("img").complete && c.querySelector("img").naturalWidth > 0,
})));
const ready = async (page) => {
  await page.waitForFunction(() => document.body.dataset.ready, null, { timeout: 120000 });
  return page.evaluate(() => ({ ready: document.body.dataset.ready, status: document.getElementById("status").textContent, isolated: self.crossOriginIsolated }));
};
const done = (page, n) => page.waitForFunction((n) => document.querySelectorAll(".card[data-done]").length >= n, n, { timeout: 120000 });

(async () => {
  const [exe, url, shot, pid, ...files] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: exe,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"],
  });
  const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning") problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(String(e)));
  const t0 = Date.now();
  await page.goto(url);
  const first = await ready(page);
  first.ms = Date.now() - t0;
  await page.setInputFiles("#file", files);
  await done(page, files.length);
  const picked = await cards(page);
  // The page's own limits: pixels of one photo (lowered here), and a strip too long to resize.
  const limits = await page.evaluate(async () => {
    const said = (p) => p.then(() => "classified", (e) => e.message);
    const max = retrain.info.max_pixels;
    retrain.info.max_pixels = 100;
    const pixels = await said(retrain.classify(new ImageData(20, 10)));
    retrain.info.max_pixels = max;
    const strip = await said(retrain.classify(new ImageData(1, 70000)));
    const after = await said(retrain.classify(new ImageData(300, 200)));
    return { pixels, strip, after };
  });

  // The camera: frames classified continuously; one kept as a card.
  await page.click("#cam");
  await page.waitForFunction(() => document.querySelector("#live .row.first"), null, { timeout: 60000 });
  const live = await page.$eval("#live .row.first", (r) => r.dataset.class);
  await page.click("#snap");
  await done(page, files.length + 1);
  await page.click("#cam");
  const camera = (await cards(page)).find((c) => c.name.startsWith("camera "));
  await page.screenshot({ path: shot, fullPage: true });

  // Offline: the service worker answers once the server is gone.
  await page.waitForFunction(() => document.body.dataset.offline === "1" && !!navigator.serviceWorker.controller, null, { timeout: 120000 });
  process.kill(Number(pid), "SIGTERM");
  for (let i = 0; i < 200; i++) {
    try { await fetch(url); } catch (e) { break; }
    await sleep(100);
  }
  let reachable = true;
  try { await fetch(url); } catch (e) { reachable = false; }
  await page.reload();
  const offline = await ready(page);
  offline.serverReachable = reachable;
  await page.setInputFiles("#file", [files[0]]);
  await done(page, 1);
  offline.cards = await cards(page);
  await browser.close();
  console.log(JSON.stringify({ first, picked, limits, live, camera, offline, problems }));
})().catch((e) => { console.error(e); process.exit(1); });
