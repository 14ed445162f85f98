// The browser half of bench/web.py: opens an exported page in a fresh headless Chromium,
// times the first answer from navigation (model and runtime downloaded, compiled, first photo
// classified), then classifies every photo through `retrain.classify`, timing each call
// (decode, preprocessing graph, model). Prints JSON.
// usage: node bench/web.cjs CHROMIUM URL PHOTO...
"use strict";
const fs = require("fs");
const path = require("path");
const { chromium } = require(path.join(__dirname, "../.browser/node_modules/playwright-core"));

(async () => {
  const [exe, url, ...photos] = process.argv.slice(2);
  const browser = await chromium.launch({ executablePath: exe, args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
  const page = await browser.newPage();
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning") problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(String(e)));
  const classify = (file) => page.evaluate(async ({ name, b64 }) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const t = performance.now();
    const r = await retrain.classify(new File([bytes], name));
    return { name, ms: performance.now() - t, ...r };
  }, { name: path.basename(file), b64: fs.readFileSync(file).toString("base64") });
  const t0 = Date.now();
  await page.goto(url);
  await page.waitForFunction(() => document.body.dataset.ready, null, { timeout: 120000 });
  const readyMs = Date.now() - t0;
  const first = await classify(photos[0]);
  const firstAnswerMs = Date.now() - t0;
  const answers = [first];
  for (const p of photos.slice(1)) answers.push(await classify(p));
  // The model and preprocessing alone: an already decoded 256×256 image (no JPEG, no canvas).
  const modelMs = await page.evaluate(async () => {
    const img = new ImageData(256, 256), ms = [];
    for (let i = 0; i < 21; i++) {
      const t = performance.now();
      await retrain.classify(img);
      ms.push(performance.now() - t);
    }
    return ms.slice(1).sort((a, b) => a - b)[10];
  });
  const backend = await page.evaluate(() => retrain.backend);
  await browser.close();
  console.log(JSON.stringify({ backend, readyMs, firstAnswerMs, modelMs, answers, problems }));
})().catch((e) => { console.error(e); process.exit(1); });
