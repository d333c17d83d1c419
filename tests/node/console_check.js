// Drives the admin console in Debian's chromium with puppeteer-core, as an operator would:
// enters the token, finds the dead event in the dead-letter list, opens its page, reads
// its attempts, retries it, waits until it is delivered, then reads the charts' data.
// Usage: node console_check.js <console url> <admin token> <dead event id> <expected delivered>
// Prints one JSON object with what the page showed; the C++ test compares it with the database.
// SCREENSHOT / SCREENSHOT_EVENT: write the overview / the event page as PNG there (docs/).
"use strict";
const puppeteer = require("puppeteer-core");

const [url, token, deadId, expectDelivered] = process.argv.slice(2);
const wait = {timeout: 20000, polling: 100};

(async () => {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
  });
  const out = {};
  try {
    const page = await browser.newPage();
    page.on("dialog", (d) => d.accept());
    await page.goto(url, {waitUntil: "load"});
    // The token, entered once.
    await page.waitForSelector("#token", {visible: true});
    await page.type("#token", token);
    await page.click("#token-use");
    // The dead letter, found in the list, and its page opened by clicking its id.
    const link = `#dead a.event-link[href="#event/${deadId}"]`;
    await page.waitForSelector(link, {visible: true, timeout: 20000});
    out.dead_row = await page.$eval(link, (a) => Array.from(a.closest("tr").cells).map((c) => c.textContent));
    await page.click(link);
    await page.waitForFunction(() => document.querySelectorAll("#attempts tr").length >= 2, wait);
    out.status_before = await page.$eval("#event-status", (e) => e.textContent);
    out.attempts_before = await page.$$eval("#attempts tr", (trs) =>
      trs.map((tr) => ({attempt: tr.cells[0].textContent, handler: tr.cells[1].textContent,
                        outcome: tr.cells[2].textContent, answer: tr.cells[3].textContent})));
    // Retried with the token, then seen delivered.
    await page.click("#event-retry");
    await page.waitForFunction(() => document.getElementById("event-status").textContent === "done", wait);
    out.status_after = await page.$eval("#event-status", (e) => e.textContent);
    out.attempts_after = await page.$$eval("#attempts tr", (trs) => trs.map((tr) => tr.cells[3].textContent));
    if (process.env.SCREENSHOT_EVENT) await page.screenshot({path: process.env.SCREENSHOT_EVENT, fullPage: true});
    // Back to the overview: the charts' data once the relay's memory has counted the retry.
    await page.goto(url + "#", {waitUntil: "load"});
    await page.waitForFunction((n) => {
      const h = window.pgrelayConsole.history;
      return h && h.points.length > 0 && h.points[h.points.length - 1].delivered_total >= n;
    }, wait, Number(expectDelivered));
    out.history_last = await page.evaluate(() => {
      const p = window.pgrelayConsole.history.points;
      return p[p.length - 1];
    });
    out.chart_points = await page.$eval("#chart-backlog", (s) => Number(s.getAttribute("data-points")));
    out.history_points = await page.evaluate(() => window.pgrelayConsole.history.points.length);
    out.handlers = await page.$$eval("#handlers tr", (trs) => trs.map((tr) => Array.from(tr.cells).map((c) => c.textContent)));
    out.unrouted = await page.$$eval("#unrouted tr", (trs) => trs.map((tr) => tr.cells[0].textContent));
    out.dead_left = await page.$$eval("#dead tr", (trs) => trs.length);
    if (process.env.SCREENSHOT) await page.screenshot({path: process.env.SCREENSHOT, fullPage: true});
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.error(String(e && e.stack || e));
  process.exit(1);
});
