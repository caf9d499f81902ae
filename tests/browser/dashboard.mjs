// Drives the dashboard of a running `topk serve` in headless Chromium: changes the
// period twice and checks each time that the table shows the API's top 10; finds a
// product with the search box; saves a screenshot. Usage: node dashboard.mjs BASE_URL SCREENSHOT.png
import { chromium } from "playwright-core";

const [base, shot] = process.argv.slice(2);
if (!base || !shot) {
  console.error("usage: node dashboard.mjs BASE_URL SCREENSHOT.png");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
const errors = [];
page.on("pageerror", (e) => errors.push(e.message));

// The table's rows, and the query the page last loaded.
async function table() {
  return page.evaluate(() => ({
    query: document.body.dataset.query,
    rows: [...document.querySelectorAll("#top-table tbody tr[data-product]")].map((tr) => ({
      product_id: tr.dataset.product,
      count: Number(tr.cells[2].textContent.replace(/[^0-9-]/g, "")),
    })),
  }));
}

// The demo keeps selling, so the table and a later API call can see different moments:
// compare until they agree (the API caches open answers for a second), or give up.
async function sameAsApi(label, wantQuery) {
  await page.waitForFunction((w) => (document.body.dataset.query || "").includes(w), wantQuery, { timeout: 15000 });
  let last;
  for (let attempt = 0; attempt < 10; attempt++) {
    const t = await table();
    const api = await (await fetch(`${base}/api/v1/top?${t.query}`)).json();
    const want = api.rows.slice(0, 10).map((r) => ({ product_id: r.product_id, count: r.count }));
    last = { label, query: t.query, table: t.rows.slice(0, 10), api: want };
    if (want.length > 0 && JSON.stringify(want) === JSON.stringify(t.rows.slice(0, 10))) {
      console.log(`${label}: table matches the API's top ${want.length} (${t.query})`);
      return;
    }
    await page.waitForTimeout(700);
  }
  throw new Error(`${label}: the table never matched the API: ${JSON.stringify(last)}`);
}

try {
  await page.goto(base);
  await page.waitForSelector("#top-table tbody tr[data-product]", { timeout: 20000 });
  await sameAsApi("day (default)", "granularity=day");
  await page.selectOption("#granularity", "hour");
  await sameAsApi("hour", "granularity=hour");
  await page.selectOption("#granularity", "custom");
  await sameAsApi("custom range", "from=");
  // A product's history, for the screenshot.
  const second = await page.locator("#top-table tbody tr[data-product]").nth(1);
  const id = await second.getAttribute("data-product");
  await second.click();
  await page.waitForFunction((id) => document.getElementById("detail-title").textContent.includes(id), id);
  await page.waitForSelector("#chart .uplot");
  // Search finds a product by its id and shows its history.
  const third = await page.locator("#top-table tbody tr[data-product]").nth(2).getAttribute("data-product");
  await page.fill("#search", third);
  await page.waitForFunction((id) => document.getElementById("detail-title").textContent.includes(id), third);
  console.log(`search: ${third} found`);
  await page.fill("#search", "");
  await second.click();
  await page.waitForFunction((id) => document.getElementById("detail-title").textContent.includes(id), id);
  if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);
} catch (e) {
  await page.screenshot({ path: shot.replace(/\.png$/, "-failed.png"), fullPage: true }).catch(() => {});
  console.error(String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
