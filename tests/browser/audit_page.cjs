// Drives `retrain audit`'s page in headless Chromium as a person would: ticks "move to …" on the
// first likely mislabelled photo and "set aside" on the first photo offered it elsewhere, clicks
// "Save decisions", keeps the download, screenshots the page and prints what it ticked as JSON.
// usage: node audit_page.cjs CHROMIUM PAGE.html DECISIONS_OUT.json SCREENSHOT.png
"use strict";
const path = require("path");
const { chromium } = require(path.join(__dirname, "../../.browser/node_modules/playwright-core"));

(async () => {
  const [exe, page_file, out, shot] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: exe,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning") problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(String(e)));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()}`));
  await page.goto("file://" + page_file);
  const before = await page.textContent("#count");
  const move = page.locator("#mislabelled input[type=radio][value^='move:']").first();
  const moveName = await move.getAttribute("name");
  const moveTo = (await move.getAttribute("value")).slice(5);
  await move.check();
  // The first "set aside" offered for another photo (a stray, a copy, a tiny image).
  const asides = page.locator("input[type=radio][value='set_aside']");
  let asideName = null;
  for (let i = 0; i < await asides.count(); i++) {
    const name = await asides.nth(i).getAttribute("name");
    if (name !== moveName) { await asides.nth(i).check(); asideName = name; break; }
  }
  const after = await page.textContent("#count");
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#save-button")]);
  await download.saveAs(out);
  await page.screenshot({ path: shot });
  await browser.close();
  console.log(JSON.stringify({ before, after, moveName, moveTo, asideName, suggested: download.suggestedFilename(), problems }));
})().catch((e) => { console.error(e); process.exit(1); });
