// Drives the real VS Code workbench served by code-server in headless Chromium: waits for the
// DeepFIM status-bar item, opens a Python file, types, and reports ghost text, status bar and
// notifications; writes a screenshot. Usage: node drive.mjs URL WORKSPACE SCREENSHOT
import puppeteer from "puppeteer-core";

const [url, workspace, screenshot] = process.argv.slice(2);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--window-size=1400,900"],
});
const result = { statusBar: [], ghost: "", notifications: [] };
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1400, height: 900 });
  await page.goto(`${url}/?folder=${workspace}`, { waitUntil: "domcontentloaded", timeout: 120_000 });
  await page.waitForSelector(".monaco-workbench", { timeout: 120_000 });
  const statusBar = () =>
    page.$$eval(".statusbar-item", (els) => els.map((e) => e.textContent.trim()).filter((t) => t.includes("DeepFIM")));
  for (let i = 0; i < 120 && (await statusBar()).length === 0; i++) await sleep(500);
  await page.keyboard.down("Control");
  await page.keyboard.press("p");
  await page.keyboard.up("Control");
  await sleep(1500);
  await page.keyboard.type("shop.py");
  await sleep(1500);
  await page.keyboard.press("Enter");
  await page.waitForSelector(".monaco-editor .view-lines", { timeout: 60_000 });
  await page.click(".monaco-editor .view-lines");
  await page.keyboard.down("Control");
  await page.keyboard.press("End");
  await page.keyboard.up("Control");
  await page.keyboard.press("ArrowUp");
  await page.keyboard.press("End");
  await page.keyboard.press("Escape");
  await page.keyboard.type(".pr", { delay: 80 }); // stop mid-word, as one does while typing
  for (let i = 0; i < 240 && !result.ghost; i++) {
    result.ghost = await page.$$eval(".ghost-text-decoration, .ghost-text", (els) => els.map((e) => e.textContent).join(""));
    await sleep(500);
  }
  result.statusBar = await statusBar();
  result.notifications = await page.$$eval(".notification-list-item-message", (els) => els.map((e) => e.textContent));
  if (result.ghost) {
    await page.keyboard.press("Tab"); // VS Code's accept key: runs the item's deepfim.accept command
    await sleep(1000);
    result.lineAfterAccept = await page.$$eval(".view-line", (els) => els.map((e) => e.textContent).filter((t) => t.includes("lambda")));
  }
  await page.screenshot({ path: screenshot });
} finally {
  await browser.close();
}
console.log(JSON.stringify(result, null, 2));
