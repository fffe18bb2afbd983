// Load the dashboard of a running server in headless Chromium, check that
// the charts and the queue render with the counts the server reports, open
// a handoff packet, and save a screenshot.
//
// node dashboard.mjs BASE_URL TOKEN SCREENSHOT.png EXPECTED.json
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";

const [base, token, screenshot, expectedPath] = process.argv.slice(2);
const expected = JSON.parse(readFileSync(expectedPath, "utf8"));
const fail = (msg) => { console.error("FAIL: " + msg); process.exit(1); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--headless=new"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("requestfailed", (r) => errors.push("request failed: " + r.url()));
  await page.goto(`${base}/#token=${token}`);
  await page.waitForSelector("#queue-table tr.queue-row", { timeout: 15000 });

  const kpi = async (id) => Number((await page.textContent(`#kpi-${id}`)).match(/^\d+/)[0]);
  if ((await kpi("tickets")) !== expected.tickets) fail(`tickets KPI ${await kpi("tickets")} != ${expected.tickets}`);
  if ((await kpi("escalated")) !== expected.escalated) fail(`escalated KPI != ${expected.escalated}`);
  const rows = await page.$$eval("#queue-table tr.queue-row", (r) => r.length);
  if (rows !== expected.open) fail(`queue rows ${rows} != ${expected.open}`);
  const firstTier = await page.textContent("#queue-table tr.queue-row .tier");
  if (firstTier !== "critical") fail(`first queue row is ${firstTier}, not critical`);

  // The stacked bars add up to the escalations per tier.
  const bars = await page.$$eval("#chart-tiers rect.bar", (rs) => rs.map((r) => [r.dataset.key, Number(r.dataset.value)]));
  const sum = {};
  for (const [k, v] of bars) sum[k] = (sum[k] || 0) + v;
  for (const [tier, n] of Object.entries(expected.by_tier)) {
    if ((sum[tier] || 0) !== n) fail(`chart shows ${sum[tier] || 0} ${tier}, expected ${n}`);
  }
  const points = await page.$$eval("#chart-rate circle.point", (c) => c.length);
  if (points < 1) fail("the rate chart has no points");
  const agents = await page.$$eval("#chart-agents rect.hbar", (r) => r.length);
  if (agents !== expected.agents) fail(`workload chart shows ${agents} agents, expected ${expected.agents}`);
  const plugins = await page.$$eval("#plugins tr", (r) => r.length - 1);
  if (plugins < 7) fail(`plugin health lists ${plugins} plugins`);

  // The quality figures: CSAT beside the rest, resolution per tier, over-
  // and under-escalation, the rate's trend.
  const text = async (sel) => (await page.textContent(sel)).replace(/\s+/g, " ");
  const csat = await text("#csat-escalated");
  if (!csat.startsWith(expected.csat_escalated)) fail(`CSAT of escalated tickets: ${csat}`);
  const rest = await text("#csat-rest");
  if (!rest.startsWith(expected.csat_rest)) fail(`CSAT of the rest: ${rest}`);
  const over = await text("#over-escalated");
  if (!over.includes(expected.over)) fail(`over-escalation: ${over}`);
  const under = await text("#under-escalated");
  if (!under.includes(expected.under)) fail(`under-escalation: ${under}`);
  const resolved = await page.$$eval("#chart-resolution rect.hbar", (r) => r.map((x) => Number(x.dataset.value)));
  if (JSON.stringify(resolved) !== JSON.stringify(expected.resolution)) fail(`resolution bars ${JSON.stringify(resolved)}`);
  const trend = await text("#trend");
  if (!trend.includes(expected.trend)) fail(`trend: ${trend}`);

  // The whole page with its figures, before a handoff covers it.
  await page.screenshot({ path: screenshot, fullPage: true });

  // Open the first handoff packet.
  await page.click("#queue-table button.handoff");
  await page.waitForSelector("#handoff-title", { timeout: 10000 });
  const title = await page.textContent("#handoff-title");
  if (!title.includes(expected.first_ticket)) fail(`handoff opened ${title}, expected ${expected.first_ticket}`);
  const summary = await page.textContent("#handoff-summary");
  if (!summary.includes(expected.summary_contains)) fail(`handoff summary: ${summary}`);
  if (errors.length) fail("page errors: " + errors.join("; "));
  console.log(`ok: ${rows} queue rows, ${bars.length} bars, ${agents} agents, handoff ${title}`);
} finally {
  await browser.close();
}
