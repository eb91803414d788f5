// What both browser tests share: Debian's Chromium under Playwright, a deadline on every
// wait, and an exit when the test that started this process goes away.
import { chromium } from "playwright-core";

/** How long any one condition may take to hold. */
export const DEADLINE_MS = 30_000;

/** Runs `test(browser)` in headless Chromium; exits 0 if it passes, 1 (saying why) if not. */
export async function run(name, test) {
  const executablePath = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
  // The Rust test holds our stdin: when it ends (even killed), so do we and the browser.
  process.stdin.resume();
  process.stdin.on("end", () => process.exit(2));
  let browser;
  try {
    browser = await chromium.launch({
      executablePath,
      headless: true,
      args: ["--no-sandbox", "--headless=new"],
      timeout: DEADLINE_MS,
    });
    await test(browser);
    console.log(`${name}: ok`);
    await browser.close();
    process.exit(0);
  } catch (error) {
    console.error(`${name}: FAILED: ${error.stack || error}`);
    if (browser) await browser.close().catch(() => {});
    process.exit(1);
  }
}

/** Throws `message` unless `condition` holds. */
export function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** The env variable `name`, which the Rust test must set. */
export function env(name) {
  const value = process.env[name];
  check(value, `${name} is not set (gateway/tests/browser.rs sets it)`);
  return value;
}
